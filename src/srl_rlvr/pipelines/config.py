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
    checkpoints: {keep: null, best_metric: null, remote: null}   # ops.checkpoints.CheckpointSettings
    failures: {nan_retries: 3, lr_factor: 0.5, oom_retries: 2}   # ops.failures.FailurePolicy
    registry: {enabled: true, uri: null, name: null, promote: null}   # pipelines.register.RegistrySection
    monitoring: {port: null, budget_usd: null, textfile: true}       # monitoring.training.MonitoringSettings
    hardware: {...}            # free-form tier facts (gpus, nodes, accelerate_config, ...)
    throughput: {...}          # free-form tier figures for the run-time estimator

Merge order: tier file, then the config file, then ``--set`` overrides. Each source is checked on its
own, so an error names the file (or ``--set``) the bad key came from. Relative paths are relative to
the folder of the YAML file that holds them. ``output_dir`` is never read from YAML: the pipeline owns
the folder layout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.yamlconf import (
    OVERRIDES_SOURCE,
    check_keys,
    dataclass_schema,
    deep_merge,
    expand_dotted,
    read_yaml,
    resolve_path,
    unknown_value,
)
from srl_rlvr.errors import UserInputError
from srl_rlvr.tiers import named_tier, tier_names

PIPELINE_STAGES = ("srl", "rlvr", "sft", "eval")
EVAL_MODEL_LABELS = ("base", "srl", "srl_rlvr", "sft")
# Eval sets a pipeline can score: the published test split, the dev split that recipe search reads
# (never test), and the transfer split phrased unlike anything trained on (srl_rlvr.data.demo).
EVAL_SETS = ("test", "dev", "transfer")
EMBEDDED_DEFAULT = "smollm2-135m"  # same as models.provision.EMBEDDED_DEFAULT, without importing torch
# Keys the pipeline sets itself; a YAML value would be silently overwritten, so it is an error instead.
PIPELINE_OWNED_FIELDS = ("output_dir",)


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
    checkpoints: dict[str, Any] = field(default_factory=dict)  # ops.checkpoints.CheckpointSettings fields
    failures: dict[str, Any] = field(default_factory=dict)  # ops.failures.FailurePolicy fields
    registry: dict[str, Any] = field(default_factory=dict)  # pipelines.register.RegistrySection fields
    monitoring: dict[str, Any] = field(default_factory=dict)  # monitoring.training.MonitoringSettings fields
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

    def stage_guard(self, stage: str, fault: Any = None) -> Any:
        """The fault-handling settings of one training stage (``training.resilience.StageGuard``).
        Not part of any stage hash: they change how a run survives faults, not what it trains."""
        from srl_rlvr.monitoring.training import MonitoringSettings
        from srl_rlvr.ops.checkpoints import CheckpointSettings
        from srl_rlvr.ops.failures import FailurePolicy
        from srl_rlvr.training.resilience import StageGuard

        price = self.throughput.get("price_per_hour") or self.hardware.get("price_per_hour") or 0.0
        return StageGuard(stage, checkpoints=_build("checkpoints", CheckpointSettings, self.checkpoints),
                          failures=_build("failures", FailurePolicy, self.failures), fault=fault,
                          monitoring=_build("monitoring", MonitoringSettings, self.monitoring),
                          price_per_hour=float(price))

    def registry_section(self) -> Any:
        from srl_rlvr.pipelines.register import RegistrySection

        return _build("registry", RegistrySection, self.registry)

    def to_dict(self) -> dict[str, Any]:
        """The merged config as YAML-shaped data (what the report and the stage hashes record)."""
        return copy.deepcopy(self.raw)


def native_bf16(use_cpu: bool = False) -> bool:
    """Whether the device training runs on does bfloat16 matmuls natively (a bf16 GPU, or a CPU with
    AVX512-BF16/AMX): eval's own rule (``eval.generation.resolve_bf16``) for the stage's device. Emulated bf16
    ran at 0.015-0.020x fp32's matmul speed on a 2-core AVX2 EPYC (``python bench/bf16_matmul.py``,
    docs/results.md)."""
    import torch

    from srl_rlvr.eval.generation import resolve_bf16

    return resolve_bf16(None, "cuda" if torch.cuda.is_available() and not use_cpu else "cpu")


def _build(section: str, cls: type, kwargs: dict[str, Any]) -> Any:
    """Construct a stage config; its own value checks (e.g. reward_mode) become one-line user errors.
    ``bf16: auto`` becomes true where the hardware runs bf16 natively (:func:`native_bf16`), else false."""
    if kwargs.get("bf16") == "auto":
        kwargs = {**kwargs, "bf16": native_bf16(bool(kwargs.get("use_cpu")))}
    elif isinstance(kwargs.get("bf16"), str):
        raise UserInputError(f"config section '{section}': bf16 must be true, false or auto, got {kwargs['bf16']!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, UserInputError) as exc:
        raise UserInputError(f"config section '{section}': {exc}") from None


# --- schema ----------------------------------------------------------------------------------------
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
    elif section == "checkpoints":
        from srl_rlvr.ops.checkpoints import CheckpointSettings as cls
    elif section == "failures":
        from srl_rlvr.ops.failures import FailurePolicy as cls
    elif section == "registry":
        from srl_rlvr.pipelines.register import RegistrySection as cls
    elif section == "monitoring":
        from srl_rlvr.monitoring.training import MonitoringSettings as cls
    else:
        raise KeyError(section)
    return cls


TOP_LEVEL: dict[str, Any] = {
    "tier": str | None, "model": str, "data": dict, "stages": list[str], "srl": dict | None, "rlvr": dict | None,
    "sft": dict | None, "lora": dict | None, "eval": dict | None, "tracking": dict | None, "hardware": dict | None,
    "throughput": dict | None, "checkpoints": dict | None, "failures": dict | None,
    "registry": dict | None, "monitoring": dict | None,
    # `srl-rlvr compare` settings, checked by srl_rlvr.pipelines.compare.run; `run` ignores them
    "compare": dict | None,
}


# Sections where null means "nothing to set here" (unlike lora, where null means "no LoRA").
_EMPTY_MEANS_NOTHING = ("srl", "rlvr", "sft", "eval", "tracking", "hardware", "throughput", "checkpoints",
                        "failures", "registry", "monitoring")


def _section_schema(section: str) -> dict[str, Any]:
    if section == "data":
        return {**dataclass_schema(DataConfig), "demo": dict | None}
    if section == "data.demo":
        return dataclass_schema(DemoDataConfig)
    if section == "tracking":
        return dataclass_schema(TrackingConfig)
    schema = dataclass_schema(_stage_class(section))
    if section in ("srl", "rlvr", "sft"):
        schema["bf16"] = bool | str | None  # or "auto" (see _build)
    if section == "eval":
        schema["models"] = list[str]
        schema["sets"] = list[str]
    return schema


# --- checking one source ---------------------------------------------------------------------------
def _pipeline_owned(section: str | None):
    def refuse(key: str) -> str | None:
        owned = section in ("srl", "rlvr", "sft") and key in PIPELINE_OWNED_FIELDS
        return "is set by the pipeline (use --out)" if owned else None
    return refuse


def _check_keys(raw: dict[str, Any], schema: dict[str, Any], where: str, section: str | None) -> None:
    check_keys(raw, schema, where, section, refuse=_pipeline_owned(section))


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
    for section in ("data", "tracking", "srl", "rlvr", "sft", "lora", "eval", "checkpoints", "failures",
                    "registry", "monitoring"):
        if isinstance(raw.get(section), dict):
            _check_keys(raw[section], _section_schema(section), where, section)
    demo = (raw.get("data") or {}).get("demo")
    if isinstance(demo, dict):
        _check_keys(demo, _section_schema("data.demo"), where, "data.demo")
    for stage in raw.get("stages") or []:
        if stage not in PIPELINE_STAGES:
            raise unknown_value(where, "stages", stage, PIPELINE_STAGES)
    for label in ((raw.get("eval") or {}).get("models")) or []:
        if label not in EVAL_MODEL_LABELS:
            raise unknown_value(where, "eval.models", label, EVAL_MODEL_LABELS)
    sets = (raw.get("eval") or {}).get("sets")
    if sets is not None:
        if not sets or len(set(sets)) != len(sets):
            raise UserInputError(f"{where}: 'eval.sets' must list at least one set, each once; got {sets}")
        for name in sets:
            if name not in EVAL_SETS:
                raise unknown_value(where, "eval.sets", name, EVAL_SETS)
    return raw


# --- paths, merging, overrides ---------------------------------------------------------------------
def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths absolute against its own folder (in place)."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "test", "dev", "transfer"):
            if isinstance(data.get(key), str) and data[key] != "champ":  # "champ" names the packaged data set
                data[key] = resolve_path(data[key], base)
    model = raw.get("model")
    if isinstance(model, str) and model != EMBEDDED_DEFAULT:
        if model.startswith((".", "/", "~")) or (base / model).exists():
            raw["model"] = resolve_path(model, base)
    for section in ("srl", "rlvr", "sft"):
        args = raw.get(section)
        if isinstance(args, dict) and isinstance(args.get("deepspeed"), str):
            args["deepspeed"] = resolve_path(args["deepspeed"], base)
    hardware = raw.get("hardware")
    if isinstance(hardware, dict):
        for key, value in hardware.items():
            if key.endswith("_config") and isinstance(value, str):
                hardware[key] = resolve_path(value, base)


def list_tiers() -> list[str]:
    return tier_names()


def tier_path(name: str) -> Path:
    return named_tier(name)


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
        checkpoints=dict(raw.get("checkpoints") or {}),
        failures=dict(raw.get("failures") or {}),
        registry=dict(raw.get("registry") or {}),
        monitoring=dict(raw.get("monitoring") or {}),
        source=source,
        raw=raw,
    )
    return config
