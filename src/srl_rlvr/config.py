"""Pipeline configs: one YAML file → typed dataclasses → TRL stage configs.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --set srl.max_steps=5

Schema (a tier file under ``src/srl_rlvr/tiers/`` has the same schema)::

    tier: cpu                  # optional: start from tiers/<tier>.yaml; keys here override it (deep merge)
    model: smollm2-135m        # name, HF id or folder
    data: {train: PATH, test: PATH, format: auto, demo: {n_train: 400, n_test: 100, seed: 0}}
    stages: [srl, rlvr, eval]  # subset/order of: srl, rlvr, sft, eval
    srl: {...}                 # SRLConfig fields (every GRPOConfig field passes through)
    rlvr: {...}                # RLVRConfig fields
    sft: {...}                 # trl.SFTConfig fields
    lora: null                 # or peft LoraConfig fields (r, lora_alpha, target_modules, ...)
    eval: {...}                # EvalConfig fields, plus models: [base, srl, srl_rlvr]
    tracking: {mlflow: true, tracking_uri: null, experiment: srl-rlvr}
    hardware: {...}            # free-form tier facts (gpus, nodes, accelerate_config, ...)
    throughput: {...}          # free-form tier figures for the run-time estimator

Merge order: tier file, then the config file, then ``--set`` overrides. Each source is checked on its
own, so an error names the file (or ``--set``) the bad key came from. Relative paths are relative to
the folder of the YAML file that holds them. ``output_dir`` is never read from YAML: the pipeline owns
the folder layout.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.errors import UserInputError

TIERS_DIR = Path(__file__).parent / "tiers"
PIPELINE_STAGES = ("srl", "rlvr", "sft", "eval")
EVAL_MODEL_LABELS = ("base", "srl", "srl_rlvr", "sft")
# Eval sets a pipeline can score: the published test split, the dev split that recipe search reads
# (never test), and the transfer split phrased unlike anything trained on (srl_rlvr.data.demo).
EVAL_SETS = ("test", "dev", "transfer")
EMBEDDED_DEFAULT = "smollm2-135m"  # same as models.provision.EMBEDDED_DEFAULT, without importing torch
OVERRIDES_SOURCE = "--set"
# Keys the pipeline sets itself; a YAML value would be silently overwritten, so it is an error instead.
PIPELINE_OWNED_FIELDS = ("output_dir",)
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # PyYAML reads "1e-5" as a string


# --- dataclasses -----------------------------------------------------------------------------------
@dataclass
class DemoDataConfig:
    n_train: int = 400
    n_test: int = 100
    n_dev: int = 100
    n_transfer: int = 100
    seed: int = 0
    style: str = "prose"  # or "equations": terse one-equation steps (srl_rlvr.data.demo)
    min_ops: int = 2  # steps per problem
    max_ops: int = 4
    numbers: str = "standard"  # or "small": operands <= 9, values <= 50
    answer_step: bool = False  # the final answer as a step of its own ("The answer is N.")

    def __post_init__(self) -> None:
        from srl_rlvr.data.demo import NUMBER_SCALES, STYLES

        if self.style not in STYLES:
            raise UserInputError(f"data.demo.style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.numbers not in NUMBER_SCALES:
            raise UserInputError(f"data.demo.numbers must be one of {', '.join(NUMBER_SCALES)}, got {self.numbers!r}")
        if not 1 <= self.min_ops <= self.max_ops:
            raise UserInputError(f"data.demo: need 1 <= min_ops <= max_ops, got {self.min_ops} and {self.max_ops}")


@dataclass
class DataConfig:
    train: str | None = None
    test: str | None = None
    dev: str | None = None  # tuning split (eval.sets: [dev]); the demo writes one
    transfer: str | None = None  # differently phrased held-out problems; the demo writes one
    format: str = "auto"
    demo: DemoDataConfig | None = None


@dataclass
class TrackingConfig:
    mlflow: bool = True
    tracking_uri: str | None = None
    experiment: str = "srl-rlvr"


@dataclass
class EvalSection:
    """``models`` picks what to evaluate, ``sets`` on which data (the first is the headline set);
    ``settings`` are EvalConfig fields."""

    models: list[str] = field(default_factory=lambda: ["base", "srl", "srl_rlvr"])
    sets: list[str] = field(default_factory=lambda: ["test"])
    settings: dict[str, Any] = field(default_factory=dict)

    def eval_config(self) -> Any:
        from srl_rlvr.eval.harness import EvalConfig

        return _build("eval", EvalConfig, self.settings)


@dataclass
class PipelineConfig:
    """A loaded, checked pipeline config. Stage configs are built per run with ``*_args(output_dir)``."""

    model: str = EMBEDDED_DEFAULT
    tier: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[str] = field(default_factory=lambda: ["srl", "rlvr", "eval"])
    srl: dict[str, Any] = field(default_factory=dict)
    rlvr: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    eval: EvalSection = field(default_factory=EvalSection)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    hardware: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the YAML file it was loaded from
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # merged YAML (paths resolved)

    def srl_args(self, output_dir: str | Path, **extra: Any) -> Any:
        from srl_rlvr.training.srl_config import SRLConfig

        return _build("srl", SRLConfig, {**self.srl, **extra, "output_dir": str(output_dir)})

    def rlvr_args(self, output_dir: str | Path, **extra: Any) -> Any:
        from srl_rlvr.training.rlvr_config import RLVRConfig

        return _build("rlvr", RLVRConfig, {**self.rlvr, **extra, "output_dir": str(output_dir)})

    def sft_args(self, output_dir: str | Path, **extra: Any) -> Any:
        from trl import SFTConfig

        return _build("sft", SFTConfig, {**self.sft, **extra, "output_dir": str(output_dir)})

    def to_dict(self) -> dict[str, Any]:
        """The merged config as YAML-shaped data (what the report and the stage hashes record)."""
        return copy.deepcopy(self.raw)


def _build(section: str, cls: type, kwargs: dict[str, Any]) -> Any:
    """Construct a stage config; its own value checks (e.g. reward_mode) become one-line user errors."""
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, UserInputError) as exc:
        raise UserInputError(f"config section '{section}': {exc}") from None


# --- schema ----------------------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls) if f.init}


def _stage_class(section: str) -> type:
    """Section name → the dataclass whose fields it may set (imported lazily: trl is slow to import)."""
    if section == "srl":
        from srl_rlvr.training.srl_config import SRLConfig as cls
    elif section == "rlvr":
        from srl_rlvr.training.rlvr_config import RLVRConfig as cls
    elif section == "sft":
        from trl import SFTConfig as cls
    elif section == "lora":
        from peft import LoraConfig as cls
    elif section == "eval":
        from srl_rlvr.eval.harness import EvalConfig as cls
    else:
        raise KeyError(section)
    return cls


TOP_LEVEL: dict[str, Any] = {
    "tier": str | None, "model": str, "data": dict, "stages": list[str], "srl": dict | None, "rlvr": dict | None,
    "sft": dict | None, "lora": dict | None, "eval": dict | None, "tracking": dict | None, "hardware": dict | None,
    "throughput": dict | None,
    "compare": dict | None,  # `srl-rlvr compare` settings, checked by srl_rlvr.compare; `run` ignores them
}


# Sections where null means "nothing to set here" (unlike lora, where null means "no LoRA").
_EMPTY_MEANS_NOTHING = ("srl", "rlvr", "sft", "eval", "tracking", "hardware", "throughput")


def _section_schema(section: str) -> dict[str, Any]:
    if section == "data":
        return {**_hints(DataConfig), "demo": dict | None}
    if section == "data.demo":
        return _hints(DemoDataConfig)
    if section == "tracking":
        return _hints(TrackingConfig)
    schema = _hints(_stage_class(section))
    if section == "eval":
        schema["models"] = list[str]
        schema["sets"] = list[str]
    return schema


# --- type checks -----------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(value fits tp, the value to keep). Lenient on types we cannot check (they are checked on build)."""
    if tp is Any or tp is typing.Any:
        return True, value
    if tp is type(None) or tp is None:
        return value is None, value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        # Exact type matches first: 3 stays an int in ``int | float``, "7" stays a str in ``str | float``.
        for arg in args:
            if _exact(value, arg):
                return True, value
        for arg in args:
            ok, new = _coerce(value, arg)
            if ok:
                return True, new
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False, value
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        out = []
        for item in value:
            ok, new = _coerce(item, item_tp)
            if not ok:
                return False, value
            out.append(new)
        return True, out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, value
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}, value
    if tp is list:
        return isinstance(value, list), value
    return True, value  # an object type (e.g. ParallelismConfig): leave it to the class itself


def _exact(value: Any, tp: Any) -> bool:
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, tp) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


# --- checking one source ---------------------------------------------------------------------------
def _unknown_key(where: str, section: str | None, key: str, allowed: list[str]) -> UserInputError:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    place = f"section '{section}'" if section else "top level"
    return UserInputError(f"{where}: {place}: unknown key '{key}'{hint}")


def _check_keys(raw: dict[str, Any], schema: dict[str, Any], where: str, section: str | None) -> None:
    """Check names and types of one mapping in place (coercing e.g. "1e-5" to a float)."""
    for key in list(raw):
        if not isinstance(key, str):
            raise UserInputError(f"{where}: {section or 'top level'}: key {key!r} is not a string")
        if key not in schema:
            raise _unknown_key(where, section, key, list(schema))
        if section in ("srl", "rlvr", "sft") and key in PIPELINE_OWNED_FIELDS:
            raise UserInputError(f"{where}: section '{section}': '{key}' is set by the pipeline (use --out)")
        ok, value = _coerce(raw[key], schema[key])
        name = f"{section}.{key}" if section else key
        if not ok:
            raise UserInputError(
                f"{where}: '{name}' must be {_type_name(schema[key])}, got {type(raw[key]).__name__} {raw[key]!r}"
            )
        raw[key] = value


def check_source(raw: Any, where: str) -> dict[str, Any]:
    """Validate one YAML document (or the ``--set`` overrides) on its own; return a checked copy."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping of config keys, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    _check_keys(raw, TOP_LEVEL, where, None)
    for section in _EMPTY_MEANS_NOTHING:  # a bare "srl:" line sets nothing; it must not wipe the tier's section
        if section in raw and raw[section] is None:
            del raw[section]
    for section in ("data", "tracking", "srl", "rlvr", "sft", "lora", "eval"):
        if isinstance(raw.get(section), dict):
            _check_keys(raw[section], _section_schema(section), where, section)
    demo = (raw.get("data") or {}).get("demo")
    if isinstance(demo, dict):
        _check_keys(demo, _section_schema("data.demo"), where, "data.demo")
    for stage in raw.get("stages") or []:
        if stage not in PIPELINE_STAGES:
            raise _unknown_stage(where, "stages", stage, PIPELINE_STAGES)
    for label in ((raw.get("eval") or {}).get("models")) or []:
        if label not in EVAL_MODEL_LABELS:
            raise _unknown_stage(where, "eval.models", label, EVAL_MODEL_LABELS)
    sets = (raw.get("eval") or {}).get("sets")
    if sets is not None:
        if not sets or len(set(sets)) != len(sets):
            raise UserInputError(f"{where}: 'eval.sets' must list at least one set, each once; got {sets}")
        for name in sets:
            if name not in EVAL_SETS:
                raise _unknown_stage(where, "eval.sets", name, EVAL_SETS)
    return raw


def _unknown_stage(where: str, key: str, value: str, allowed: tuple[str, ...]) -> UserInputError:
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserInputError(f"{where}: '{key}': unknown value '{value}'{hint}; choose from {', '.join(allowed)}")


# --- paths, merging, overrides ---------------------------------------------------------------------
def _resolve(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths absolute against its own folder (in place)."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "test", "dev", "transfer"):
            if isinstance(data.get(key), str) and data[key] != "champ":  # "champ" names the packaged data set
                data[key] = _resolve(data[key], base)
    model = raw.get("model")
    if isinstance(model, str) and model != EMBEDDED_DEFAULT:
        if model.startswith((".", "/", "~")) or (base / model).exists():
            raw["model"] = _resolve(model, base)
    for section in ("srl", "rlvr", "sft"):
        args = raw.get(section)
        if isinstance(args, dict) and isinstance(args.get("deepspeed"), str):
            args["deepspeed"] = _resolve(args["deepspeed"], base)
    hardware = raw.get("hardware")
    if isinstance(hardware, dict):
        for key, value in hardware.items():
            if key.endswith("_config") and isinstance(value, str):
                hardware[key] = _resolve(value, base)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists, scalars, null) in ``over`` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"srl.max_steps": 5}`` → ``{"srl": {"max_steps": 5}}`` (nested dicts pass through)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            raise UserInputError(f"{OVERRIDES_SOURCE}: bad key {key!r}")
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        out = deep_merge(out, {parts[0]: nested})
    return out


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("srl.max_steps=5", "stages=[srl,eval]")`` → dotted overrides; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"{OVERRIDES_SOURCE} {item!r}: expected KEY=VALUE, e.g. srl.max_steps=5")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UserInputError(f"{OVERRIDES_SOURCE} {item!r}: value is not valid YAML: {exc}") from None
    return out


# --- loading ---------------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML: {exc}") from None


def list_tiers() -> list[str]:
    return sorted(p.stem for p in TIERS_DIR.glob("*.yaml"))


def tier_path(name: str) -> Path:
    path = TIERS_DIR / f"{name}.yaml"
    if not path.is_file():
        tiers = list_tiers()
        close = difflib.get_close_matches(name, tiers, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserInputError(f"unknown tier '{name}'{hint}; available: {', '.join(tiers) or 'none'}")
    return path


def _load_source_file(path: Path) -> dict[str, Any]:
    raw = check_source(read_yaml(path), str(path))
    _resolve_paths(raw, path.resolve().parent)
    return raw


def _tier_source(name: str) -> tuple[Path, dict[str, Any]]:
    path = tier_path(name)
    raw = _load_source_file(path)
    if raw.get("tier") not in (None, name):
        raise UserInputError(f"{path}: a tier file cannot start from another tier ('{raw['tier']}')")
    raw["tier"] = name
    return path, raw


def load_tier(name: str) -> PipelineConfig:
    """A tier's defaults (``src/srl_rlvr/tiers/<name>.yaml``) as a PipelineConfig."""
    path, raw = _tier_source(name)
    return _from_dict(raw, str(path))


def load_pipeline_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load ``path`` (None: start from nothing but the overrides), merged over its tier, then ``overrides``.

    ``overrides`` takes dotted keys (``{"srl.max_steps": 5}``) or nested dicts.
    """
    raw = _load_source_file(Path(path)) if path is not None else {}
    over = check_source(expand_dotted(overrides or {}), OVERRIDES_SOURCE)
    tier = over.get("tier", raw.get("tier"))  # --set tier=... picks another tier; --set tier=null none
    merged = _tier_source(tier)[1] if tier else {}
    merged = deep_merge(deep_merge(merged, raw), over)
    return _from_dict(merged, str(path) if path is not None else None)


def _from_dict(raw: dict[str, Any], source: str | None) -> PipelineConfig:
    data = dict(raw.get("data") or {})
    demo = data.pop("demo", None)
    eval_raw = dict(raw.get("eval") or {})
    models = eval_raw.pop("models", None)
    sets = eval_raw.pop("sets", None)
    stages = raw.get("stages")
    where = source or OVERRIDES_SOURCE
    if stages is not None and len(set(stages)) != len(stages):
        raise UserInputError(f"{where}: 'stages' lists a stage twice: {stages}")
    config = PipelineConfig(
        model=raw.get("model", EMBEDDED_DEFAULT),
        tier=raw.get("tier"),
        data=DataConfig(**data, demo=DemoDataConfig(**demo) if demo is not None else None),
        stages=list(stages) if stages is not None else PipelineConfig().stages,
        srl=dict(raw.get("srl") or {}),
        rlvr=dict(raw.get("rlvr") or {}),
        sft=dict(raw.get("sft") or {}),
        lora=dict(raw["lora"]) if raw.get("lora") else None,
        eval=EvalSection(models=list(models) if models is not None else EvalSection().models,
                         sets=list(sets) if sets is not None else EvalSection().sets, settings=eval_raw),
        tracking=TrackingConfig(**(raw.get("tracking") or {})),
        hardware=dict(raw.get("hardware") or {}),
        throughput=dict(raw.get("throughput") or {}),
        source=source,
        raw=raw,
    )
    return config
