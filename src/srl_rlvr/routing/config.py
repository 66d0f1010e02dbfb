"""Route configs: tiers, router, predictor, cascade, eval and budget settings from one YAML file.

    srl-rlvr route eval --config configs/route-cpu.yaml --data data/demo/test.jsonl --out out/route_eval

Schema (every key optional except ``tiers`` and each tier's ``backend``)::

    name: cb                          # router name: model "router-cb-<threshold>"
    task: math                        # task type whose tier quality the router reads
    tiers:                            # cheapest first is not required: tiers are ordered by cost
      NAME:
        backend: hf                   # hf | demo_solver | vllm | openai
        model: smollm2-135m           # name, HF id, model or LoRA adapter folder
        simulated: false              # true: cost and quality are stand-ins, reports say SIMULATED
        cost: {usd_per_mtok_input: 0.1, usd_per_mtok_output: 0.4}
        # or: {instance_usd_per_hour: 0.1, output_tokens_per_s: measured, input_tokens_per_s: null}
        latency_slo_ms: 30000
        expected_latency_ms: 5000
        expected_output_tokens: 160
        quality: {math: 0.06}         # a number, or the path of an `srl-rlvr eval` metrics.json
        predictions: null             # `srl-rlvr eval` predictions.jsonl file(s) to reuse instead of running it
    router: {threshold: null, target_strong_share: 0.5, num_retries: 1, on_over_budget: downgrade,
             allowed_fails: 3, failure_window_s: 60, cooldown_s: 30}
    predictor: {C: 1.0, hash_dim: 0, min_per_class: 2, folds: 2, seed: 0}
    cascade: {tiers: null, k: 3, min_agreement: 0.6, require_answer_statement: true}
    eval: {pair: null, score: greedy, random_seeds: 20, max_new_tokens: 256, batch_size: 16,
           temperature: 1.0, bf16: null, seed: 0}
    budgets: {default_usd: null, keys: {}, period_s: null}

A wrong key or type is a UserInputError naming the file and the key. Relative paths (a tier's ``model``
when it looks like a path, ``predictions``, ``quality`` report paths) are relative to the YAML file's folder.
The backends a tier may name are :data:`srl_rlvr.routing.backends.TARGET_BACKENDS`; routers and cascades
are built from a loaded config by :mod:`srl_rlvr.routing.build`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.names import did_you_mean
from srl_rlvr.core.yamlconf import check_keys, dataclass_schema, deep_merge, expand_dotted, read_yaml, resolve_path
from srl_rlvr.errors import UserInputError
from srl_rlvr.routing.backends import TARGET_BACKENDS
from srl_rlvr.routing.targets import MEASURED, Tier, TierCost, derived_cost, quality_from_report

OVERRIDES = "--set"
_ROUTER_NAME = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*$")
TOP_LEVEL = {"name": str, "task": str, "tiers": dict, "router": dict | None, "predictor": dict | None,
             "cascade": dict | None, "eval": dict | None, "budgets": dict | None}
TIER_KEYS = {"backend": str, "model": str | None, "simulated": bool, "cost": dict | None,
             "latency_slo_ms": float | None, "expected_latency_ms": float | None, "expected_output_tokens": int,
             "quality": dict | None, "predictions": str | list[str] | None}
COST_KEYS = {"usd_per_mtok_input": float, "usd_per_mtok_output": float, "instance_usd_per_hour": float,
             "output_tokens_per_s": float | str, "input_tokens_per_s": float | None}


@dataclass
class RouterSettings:
    threshold: float | None = None  # quality target; None: calibrated to target_strong_share
    target_strong_share: float = 0.5
    num_retries: int = 1
    on_over_budget: str = "downgrade"  # downgrade | refuse
    allowed_fails: int = 3
    failure_window_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass
class PredictorSettings:
    C: float = 1.0
    hash_dim: int = 0
    min_per_class: int = 2
    folds: int = 2  # route eval: K-fold cross-fitting, each item scored by a predictor that never saw it
    seed: int = 0


@dataclass
class CascadeSettings:
    tiers: list[str] | None = None  # order of escalation; None: every tier, cheapest first
    k: int = 3
    min_agreement: float = 0.6
    require_answer_statement: bool = True


@dataclass
class EvalSettings:
    pair: list[str] | None = None  # [weak, strong] for APGR/CPT; None: the cheapest and the priciest tier
    score: str = "greedy"  # greedy | avg_at_k (needs sampled completions)
    random_seeds: int = 20
    max_new_tokens: int = 256
    batch_size: int = 16
    temperature: float = 1.0
    bf16: bool | None = None
    seed: int = 0


@dataclass
class BudgetSettings:
    default_usd: float | None = None
    keys: dict[str, float] = field(default_factory=dict)
    period_s: float | None = None


SECTIONS = {"router": RouterSettings, "predictor": PredictorSettings, "cascade": CascadeSettings,
            "eval": EvalSettings, "budgets": BudgetSettings}


@dataclass
class TierSpec:
    """A tier as configured; ``cost`` may still wait for a measured throughput (``pending_cost``)."""

    tier: Tier
    predictions: list[str] = field(default_factory=list)
    pending_cost: dict[str, Any] | None = None  # instance pricing whose output_tokens_per_s is "measured"

    def with_measured_throughput(self, tokens_per_s: float) -> Tier:
        spec = self.pending_cost or {}
        cost = derived_cost(spec["instance_usd_per_hour"], tokens_per_s, spec.get("input_tokens_per_s"))
        return self.tier.with_cost(TierCost(cost.usd_per_mtok_input, cost.usd_per_mtok_output,
                                            cost.source + " (measured)"))


@dataclass
class RouteConfig:
    name: str
    task: str
    tiers: list[TierSpec]
    router: RouterSettings
    predictor: PredictorSettings
    cascade: CascadeSettings
    eval: EvalSettings
    budgets: BudgetSettings
    source: str | None = None

    def tier_names(self) -> list[str]:
        return [spec.tier.name for spec in self.tiers]

    def resolved_tiers(self, measured_tokens_per_s: dict[str, float] | None = None) -> list[Tier]:
        """The tiers with every ``output_tokens_per_s: measured`` cost filled in from ``measured_tokens_per_s``
        (e.g. a route eval's metrics.json); a tier left unpriced is an error, never a silent $0."""
        out = []
        for spec in self.tiers:
            if spec.pending_cost is None:
                out.append(spec.tier)
                continue
            tps = (measured_tokens_per_s or {}).get(spec.tier.name)
            if not tps:
                raise UserInputError(f"{self.source}: tier {spec.tier.name!r} prices its output "
                                     f"by a measured throughput; "
                                     f"load it beside a route eval's metrics.json "
                                     f"or give output_tokens_per_s a number")
            out.append(spec.with_measured_throughput(tps))
        return out


def _looks_like_path(value: str, base: Path) -> bool:
    return value.startswith((".", "/", "~")) or (base / value).exists()


def _resolve_tier_paths(tiers: Any, base: Path) -> None:
    """Make each tier's relative paths absolute against ``base`` (in place; wrong types are left for the checks)."""
    if not isinstance(tiers, dict):
        return
    for spec in tiers.values():
        if not isinstance(spec, dict):
            continue
        model = spec.get("model")
        if isinstance(model, str) and _looks_like_path(model, base):
            spec["model"] = resolve_path(model, base)
        predictions = spec.get("predictions")
        if isinstance(predictions, str):
            spec["predictions"] = resolve_path(predictions, base)
        elif isinstance(predictions, list):
            spec["predictions"] = [resolve_path(p, base) if isinstance(p, str) else p for p in predictions]
        quality = spec.get("quality")
        if isinstance(quality, dict):
            for key, value in quality.items():
                if isinstance(value, str):
                    quality[key] = resolve_path(value, base)


def _tier(name: str, raw: dict[str, Any], where: str) -> TierSpec:
    section = f"tiers.{name}"
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: '{section}' must be a mapping of tier settings")
    raw = copy.deepcopy(raw)
    check_keys(raw, TIER_KEYS, where, section)
    known = TARGET_BACKENDS.names()
    if "backend" not in raw:
        raise UserInputError(f"{where}: '{section}.backend' is required (one of {', '.join(known)})")
    if raw["backend"] not in TARGET_BACKENDS:
        raise UserInputError(f"{where}: '{section}.backend': unknown backend {raw['backend']!r}"
                             f"{did_you_mean(raw['backend'], known)}; choose from {', '.join(known)}")
    backend = TARGET_BACKENDS.get(raw["backend"])
    model = raw.get("model")
    if backend.requires_model and not model:
        raise UserInputError(f"{where}: '{section}.model' is required for backend '{backend.name}'")
    predictions = raw.get("predictions") or []
    predictions = [predictions] if isinstance(predictions, str) else list(predictions)
    cost, pending = _cost(raw.get("cost") or {}, where, f"{section}.cost")
    quality = {}
    for key, value in (raw.get("quality") or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise UserInputError(f"{where}: '{section}.quality.{key}' must be a number or a metrics.json path")
        if isinstance(value, str):
            value = quality_from_report(value, f"{where}: '{section}.quality.{key}'")
        if not 0.0 <= float(value) <= 1.0:
            raise UserInputError(f"{where}: '{section}.quality.{key}' must be in [0, 1], got {value}")
        quality[key] = float(value)
    tier = Tier(name=name, backend=raw["backend"], model=model, cost=cost, latency_slo_ms=raw.get("latency_slo_ms"),
                expected_latency_ms=raw.get("expected_latency_ms"),
                expected_output_tokens=raw.get("expected_output_tokens", 256), quality=quality,
                simulated=raw.get("simulated", False))
    return TierSpec(tier=tier, predictions=predictions, pending_cost=pending)


def _cost(raw: dict[str, Any], where: str, section: str) -> tuple[TierCost, dict[str, Any] | None]:
    check_keys(raw, COST_KEYS, where, section)
    priced = {"usd_per_mtok_input", "usd_per_mtok_output"} & set(raw)
    instance = {"instance_usd_per_hour", "output_tokens_per_s", "input_tokens_per_s"} & set(raw)
    if priced and instance:
        raise UserInputError(f"{where}: '{section}': give either usd_per_mtok_* prices or instance_usd_per_hour "
                             f"with throughput, not both")
    if instance:
        for key in ("instance_usd_per_hour", "output_tokens_per_s"):
            if key not in raw:
                raise UserInputError(f"{where}: '{section}.{key}' is required with instance pricing")
        tps = raw["output_tokens_per_s"]
        if isinstance(tps, str):
            if tps != MEASURED:
                raise UserInputError(f"{where}: '{section}.output_tokens_per_s' must be a number or '{MEASURED}'")
            return TierCost(0.0, 0.0, source="measured throughput pending"), raw
        try:
            return derived_cost(raw["instance_usd_per_hour"], float(tps), raw.get("input_tokens_per_s")), None
        except ValueError as exc:
            raise UserInputError(f"{where}: '{section}': {exc}") from None
    for key in priced:
        if raw[key] < 0:
            raise UserInputError(f"{where}: '{section}.{key}' must be >= 0")
    return TierCost(float(raw.get("usd_per_mtok_input", 0.0)), float(raw.get("usd_per_mtok_output", 0.0))), None


def _section(cls: type, raw: Any, where: str, name: str) -> Any:
    raw = copy.deepcopy(raw or {})
    check_keys(raw, dataclass_schema(cls), where, name)
    return cls(**raw)


def _check_values(config: RouteConfig, where: str) -> None:
    names = config.tier_names()
    r, p, c, e = config.router, config.predictor, config.cascade, config.eval
    checks = [
        (r.threshold is None or 0.0 <= r.threshold <= 1.0, "router.threshold", "must be in [0, 1]"),
        (0.0 <= r.target_strong_share <= 1.0, "router.target_strong_share", "must be in [0, 1]"),
        (r.on_over_budget in ("downgrade", "refuse"), "router.on_over_budget", "must be 'downgrade' or 'refuse'"),
        (r.num_retries >= 0 and r.allowed_fails >= 1, "router.num_retries/allowed_fails", "must be >= 0 / >= 1"),
        (p.folds >= 2, "predictor.folds", "must be >= 2 (each fold is scored by a predictor trained on the others)"),
        (p.C > 0 and p.hash_dim >= 0 and p.min_per_class >= 1, "predictor",
         "needs C > 0, hash_dim >= 0, min_per_class >= 1"),
        (c.k >= 1 and 0.0 <= c.min_agreement <= 1.0, "cascade", "needs k >= 1 and min_agreement in [0, 1]"),
        (e.score in ("greedy", "avg_at_k"), "eval.score", "must be 'greedy' or 'avg_at_k'"),
        (e.random_seeds >= 1, "eval.random_seeds", "must be >= 1"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise UserInputError(f"{where}: '{key}' {message}")
    if not _ROUTER_NAME.match(config.name):
        raise UserInputError(f"{where}: 'name' must be letters, digits, '_', '.' or '-', got {config.name!r}")
    for key, value in config.budgets.keys.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserInputError(f"{where}: 'budgets.keys.{key}' must be a number of dollars >= 0")
    for key, listed in (("eval.pair", e.pair), ("cascade.tiers", c.tiers)):
        for tier in listed or []:
            if tier not in names:
                raise UserInputError(f"{where}: '{key}': unknown tier {tier!r}; tiers are {', '.join(names)}")
    if e.pair is not None and (len(e.pair) != 2 or e.pair[0] == e.pair[1]):
        raise UserInputError(f"{where}: 'eval.pair' must name two different tiers: [weak, strong]")


def load_route_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RouteConfig:
    """Load and check a route config; ``overrides`` takes dotted keys (``{"tiers.base.model": "x"}``)."""
    path = Path(path)
    raw = read_yaml(path)
    where = str(path)
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping of config keys")
    check_keys(raw, TOP_LEVEL, where, None)
    _resolve_tier_paths(raw.get("tiers"), path.resolve().parent)  # paths in the file: relative to the file
    if overrides:
        over = expand_dotted(overrides)
        _resolve_tier_paths(over.get("tiers"), Path.cwd())  # paths on the command line: relative to the cwd
        check_keys(copy.deepcopy(over), TOP_LEVEL, OVERRIDES, None)
        for tier in (over.get("tiers") or {}):
            if tier not in (raw.get("tiers") or {}):
                raise UserInputError(f"{OVERRIDES}: 'tiers.{tier}': no such tier in {where}")
        raw = deep_merge(raw, over)
        where = f"{where} (with {OVERRIDES})"
    tiers_raw = raw.get("tiers") or {}
    if not tiers_raw:
        raise UserInputError(f"{where}: 'tiers' must list at least one tier")
    task = raw.get("task", "math")
    tiers = [_tier(str(name), spec, where) for name, spec in tiers_raw.items()]
    config = RouteConfig(
        name=raw.get("name", "cb"), task=task, tiers=tiers,
        **{name: _section(cls, raw.get(name), where, name) for name, cls in SECTIONS.items()},
        source=str(path),
    )
    _check_values(config, where)
    return config
