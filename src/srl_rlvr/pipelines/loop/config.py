"""The ``srl-rlvr loop`` YAML: one dataclass per section, with help metadata; a wrong key names the file and key.

    srl-rlvr loop --config configs/loop-cpu.yaml --out out/loop

Relative paths in the file are relative to the file. ``train`` is a fragment of a pipeline config
(``srl-rlvr run``'s schema: ``tier``, ``stages``, ``srl``, ``rlvr``, ``lora``, ``eval`` settings, ...); the
loop sets its model (the champion), its data (the distilled trajectories) and what its eval scores (the
candidate on the gate set) itself. The start model is evaluated with the same eval settings.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.yamlconf import check_keys, dataclass_schema, deep_merge, expand_dotted, read_yaml, resolve_path
from srl_rlvr.errors import UserInputError
from srl_rlvr.registry.base import CHAMPION


@dataclass
class DemoProblems:
    """Problems from the demo generator: the gate set and the traffic are two splits of one seed (disjoint)."""

    seed: int = field(default=21, metadata={"help": "Generator seed (not the demo's 0, so no demo split is reused)."})
    n_gate: int = field(default=60, metadata={"help": "Problems in the gate's eval set."})
    n_traffic: int = field(default=40, metadata={"help": "Problems sent to the served cascade as traffic."})
    min_ops: int = field(default=1, metadata={"help": "Fewest operations per problem."})
    max_ops: int = field(default=3, metadata={"help": "Most operations per problem."})
    numbers: str = field(default="small", metadata={"help": "'small' or 'standard' (data.demo.numbers)."})


@dataclass
class DataSection:
    gate: str | None = field(default=None, metadata={
        "help": "Trajectory JSONL with answers: the eval set the gate compares candidate and champion on."})
    traffic: str | None = field(default=None, metadata={
        "help": "Problems sent to the served cascade before distilling (its escalations feed the loop)."})
    demo: DemoProblems | None = field(default=None, metadata={
        "help": "Generate gate and traffic from the demo task instead of files."})


@dataclass
class RegistrySection:
    uri: str | None = field(default=None, metadata={"help": "Registry URI (default: OUT/registry/registry.db)."})
    name: str = field(default="demo-math", metadata={"help": "Registered model name."})
    alias: str = field(default=CHAMPION, metadata={"help": "The alias the gate moves and the server follows."})
    start_model: str = field(default="smollm2-135m", metadata={
        "help": "When no version holds the alias: registered, evaluated and made the first holder."})
    margin: float = field(default=0.0, metadata={"help": "Gate: required mean gain per problem."})
    alpha: float = field(default=0.05, metadata={"help": "Gate: significance of the one-sided paired test."})
    force_reason: str | None = field(default=None, metadata={
        "help": "Promote whatever the gate says, audited as force_promote with this reason (drills only)."})


@dataclass
class ServeSection:
    url: str | None = field(default=None, metadata={
        "help": "A running `srl-rlvr serve --model models:/NAME@ALIAS` (.../v1); null: the loop starts one."})
    route_config: str | None = field(default=None, metadata={
        "help": "Route config of the started server (its cascade makes the traffic, its tiers the teacher)."})
    api_key_env: str | None = field(default=None, metadata={"help": "Variable holding the server's API key."})
    poll_s: float = field(default=1.0, metadata={"help": "The started server's registry poll interval."})
    startup_timeout_s: float = field(default=300.0, metadata={"help": "Seconds to wait for the server to answer."})
    swap_timeout_s: float = field(default=300.0, metadata={"help": "Seconds to wait for the hot-swap."})


@dataclass
class TrafficSection:
    model: str | None = field(default=None, metadata={"help": "Model the traffic asks (default: cascade-<route>)."})
    max_tokens: int = field(default=128, metadata={"help": "max_tokens of each traffic request."})
    concurrency: int = field(default=4, metadata={"help": "Traffic requests in flight."})


@dataclass
class InputsSection:
    escalations: list[str] = field(default_factory=list, metadata={
        "help": "More escalation logs (a cascade's --escalation-log) to distill from."})
    prompts: list[str] = field(default_factory=list, metadata={
        "help": "More trajectory rows with problem and a gold answer to distill from."})
    only_verified: bool = field(default=True, metadata={
        "help": "Keep only escalations whose answering tier passed the cascade's verifier."})


@dataclass
class TeacherSection:
    url: str | None = field(default=None, metadata={"help": "OpenAI-compatible teacher (.../v1); null: the server."})
    model: str | None = field(default=None, metadata={
        "help": "Teacher model name (default with the loop's server: tier-<route>-<tier>)."})
    tier: str = field(default="teacher", metadata={"help": "The route config's tier that teaches."})
    api_key_env: str | None = field(default=None, metadata={"help": "Variable holding the teacher's API key."})
    samples: int = field(default=1, metadata={"help": "Samples per problem (distill --samples)."})
    max_attempts: int = field(default=2, metadata={"help": "Rounds for a problem with no kept sample."})
    concurrency: int = field(default=4, metadata={"help": "Teacher requests in flight."})
    temperature: float = field(default=0.7, metadata={"help": "Teacher sampling temperature."})
    max_tokens: int = field(default=512, metadata={"help": "Teacher max_tokens."})
    min_kept: int = field(default=4, metadata={
        "help": "Fewer kept trajectories than this stops the loop before training (nothing to learn from)."})


@dataclass
class LoopConfig:
    data: DataSection = field(default_factory=DataSection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    serve: ServeSection = field(default_factory=ServeSection)
    traffic: TrafficSection = field(default_factory=TrafficSection)
    inputs: InputsSection = field(default_factory=InputsSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    train: dict[str, Any] = field(default_factory=lambda: {"tier": "cpu", "stages": ["srl", "rlvr"]})
    source: str | None = None


SECTIONS = {"data": DataSection, "registry": RegistrySection, "serve": ServeSection, "traffic": TrafficSection,
            "inputs": InputsSection, "teacher": TeacherSection}
TOP_LEVEL = {**{name: dict for name in SECTIONS}, "train": dict}


def _section(cls: type, raw: Any, where: str, name: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: '{name}' must be a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    schema = dataclass_schema(cls)
    nested = {k: raw[k] for k in list(raw) if k == "demo" and cls is DataSection}
    for k in nested:
        raw.pop(k)
    check_keys(raw, schema, where, name)
    if nested.get("demo") is not None:
        raw["demo"] = _section(DemoProblems, nested["demo"], where, "data.demo")
    return cls(**raw)


def _resolve(raw: dict[str, Any], base: Path) -> None:
    """The file's relative paths, against the file's folder (in place)."""
    for section, keys in (("data", ("gate", "traffic")), ("serve", ("route_config",))):
        part = raw.get(section)
        if isinstance(part, dict):
            for key in keys:
                if isinstance(part.get(key), str):
                    part[key] = resolve_path(part[key], base)
    inputs = raw.get("inputs")
    if isinstance(inputs, dict):
        for key in ("escalations", "prompts"):
            if isinstance(inputs.get(key), list):
                inputs[key] = [resolve_path(p, base) if isinstance(p, str) else p for p in inputs[key]]
    registry = raw.get("registry")
    if isinstance(registry, dict) and isinstance(registry.get("start_model"), str):
        model = registry["start_model"]
        if model.startswith((".", "/", "~")) or (base / model).exists():
            registry["start_model"] = resolve_path(model, base)


def load_loop_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LoopConfig:
    """Load and check a loop config; ``overrides`` takes dotted keys (``{"teacher.samples": 2}``)."""
    path = Path(path)
    where = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping of config keys")
    check_keys(raw, TOP_LEVEL, where, None)
    _resolve(raw, path.resolve().parent)
    if overrides:
        over = expand_dotted(overrides)
        check_keys(copy.deepcopy(over), TOP_LEVEL, "--set", None)
        raw = deep_merge(raw, over)
        where = f"{where} (with --set)"
    config = LoopConfig(**{name: _section(cls, raw.get(name), where, name) for name, cls in SECTIONS.items()},
                        train=dict(raw["train"]) if raw.get("train") is not None else LoopConfig().train,
                        source=str(path))
    _check(config, where)
    return config


def _check(config: LoopConfig, where: str) -> None:
    data, serve = config.data, config.serve
    if (data.gate is None) == (data.demo is None):
        raise UserInputError(f"{where}: set exactly one of 'data.gate' (a file) and 'data.demo' (generated)")
    if data.traffic is not None and data.demo is not None:
        raise UserInputError(f"{where}: 'data.traffic' and 'data.demo' both give traffic; set one")
    if serve.url is None and serve.route_config is None:
        raise UserInputError(f"{where}: the loop starts a server when 'serve.url' is null, and that server needs "
                             "'serve.route_config' (its cascade and its teacher tier)")
    if config.teacher.url is None and serve.route_config is None and serve.url is not None:
        raise UserInputError(f"{where}: 'teacher.url' is null, so the teacher is a tier of the server's route "
                             "config: set 'serve.route_config' to that file")
    if config.teacher.url is not None and config.teacher.model is None:
        raise UserInputError(f"{where}: 'teacher.url' is set, so 'teacher.model' must name the model to ask there")
    for key in ("stages",):
        stages = config.train.get(key)
        if stages is not None and (not isinstance(stages, list) or not stages
                                   or any(s not in ("srl", "rlvr", "sft") for s in stages) or "eval" in stages):
            raise UserInputError(f"{where}: 'train.stages' must list training stages (srl, rlvr, sft); the loop "
                                 f"runs the eval itself, got {stages!r}")
    for key in ("model", "data", "registry"):
        if key in config.train:
            raise UserInputError(f"{where}: 'train.{key}' is set by the loop (the champion, the distilled "
                                 "trajectories and the gate set, its own registry step); remove it")
    for key in ("models", "sets"):
        if key in (config.train.get("eval") or {}):
            raise UserInputError(f"{where}: 'train.eval.{key}' is set by the loop (the candidate, on the gate "
                                 "set); 'train.eval' may set the eval settings only (max_new_tokens, ...)")
    if config.teacher.samples < 1 or config.teacher.max_attempts < 1 or config.teacher.concurrency < 1:
        raise UserInputError(f"{where}: 'teacher.samples', 'teacher.max_attempts' and 'teacher.concurrency' "
                             "must be >= 1")


def candidate_label(stages: list[str]) -> str:
    """The eval label of the model the loop's training ends with (``srl_rlvr`` after RLVR)."""
    last = stages[-1]
    return {"srl": "srl", "rlvr": "srl_rlvr", "sft": "sft"}[last]


__all__ = ["LoopConfig", "candidate_label", "load_loop_config"]
