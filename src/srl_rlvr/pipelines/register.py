"""A pipeline's last step before the report: register its models, with their eval, as candidates; then,
when ``registry.promote`` names one, put it through the promotion gate.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo                 # registers base, srl, srl_rlvr
    srl-rlvr registry list --registry sqlite:///$PWD/out/demo/registry/registry.db

The registry is ``registry.uri`` (else ``$SRL_RLVR_REGISTRY``, else ``OUT/registry/registry.db``, so a run
never writes to a shared registry unless told to). Versions are keyed by model folder and eval: a rerun
of a finished pipeline registers nothing new. With no version holding the alias yet, the gate compares
the candidate with the base model of the same run (both on the headline eval set), so the first champion
must beat the model it was trained from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.console import say
from srl_rlvr.core.io import write_json
from srl_rlvr.registry.base import CHAMPION, RegistryError

REGISTRY_FILE = "registry.json"  # what the report reads


@dataclass
class RegistrySection:
    """The pipeline YAML's ``registry:`` section."""

    enabled: bool = field(default=True, metadata={"help": "Register the run's models after eval."})
    uri: str | None = field(default=None, metadata={"help": "Registry URI (default: OUT/registry/registry.db)."})
    name: str | None = field(default=None, metadata={"help": "Model name (default: the config file's name)."})
    promote: str | None = field(default=None, metadata={"help": "Eval label to promote through the gate, e.g. "
                                                                 "srl_rlvr (default: none)."})
    alias: str = field(default=CHAMPION, metadata={"help": "The alias promote moves."})
    margin: float = field(default=0.0, metadata={"help": "Gate: required mean gain per problem."})
    alpha: float = field(default=0.05, metadata={"help": "Gate: significance of the one-sided paired test."})


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text).strip("-")
    return "-".join(part for part in out.split("-") if part)[:63] or "srl-rlvr"


def same_version(version, source: str, eval_digest: str, metrics: dict[str, float]) -> bool:
    return (version.source == source and version.lineage.eval_set_digest == eval_digest
            and version.lineage.eval_metrics == metrics)


def register_run(config: Any, out: Path, models: dict[str, str], base_model: str | None) -> dict[str, Any] | None:
    """Register ``models`` (label → folder, plus the base) and maybe promote; write and return OUT/registry.json."""
    from srl_rlvr.registry.gate import GateSettings
    from srl_rlvr.registry.lifecycle import Registry
    from srl_rlvr.registry.lineage import lineage_of
    from srl_rlvr.registry.location import REGISTRY_ENV

    section = config.registry_section()
    if not section.enabled:
        return None
    uri = section.uri or os.environ.get(REGISTRY_ENV) or f"sqlite:///{(out / 'registry' / 'registry.db').resolve()}"
    name = section.name or _slug(Path(config.source).stem if config.source else "srl-rlvr")
    headline = config.eval.sets[0]
    registry = Registry.open(uri)
    folders = {"base": base_model, **models} if base_model and "base" in config.eval.models else dict(models)
    known = {v.source: v for v in (registry.backend.versions(name) if name in registry.backend.names() else [])}
    versions: dict[str, Any] = {}
    for label, folder in folders.items():
        metrics_file = out / "eval" / headline / label / "metrics.json"
        metrics = metrics_file if metrics_file.is_file() else None
        source = str(Path(folder).resolve())
        lineage = lineage_of(folder, metrics, stage="base" if label == "base" else None)
        existing = known.get(source)
        if existing is not None and same_version(existing, source, lineage.eval_set_digest, lineage.eval_metrics):
            versions[label] = existing
            continue
        versions[label] = registry.register(name, folder, lineage=lineage)
    result: dict[str, Any] = {"uri": uri, "name": name, "eval_set": headline, "audit_log": str(registry.audit.path)}
    if section.promote:
        if section.promote not in versions:
            raise RegistryError(f"registry.promote: {section.promote!r} is not one of this run's models "
                                f"{sorted(versions)}")
        candidate = versions[section.promote]
        baseline = versions.get("base")
        gate = GateSettings(margin=section.margin, alpha=section.alpha)
        promotion = {"label": section.promote, "version": candidate.version, "alias": section.alias}
        try:
            decision = registry.promote(name, candidate.version, section.alias, gate=gate,
                                        baseline=baseline.version if baseline else None)
            promotion.update(passed=True, summary=decision.summary)
        except RegistryError as exc:
            promotion.update(passed=False, summary=str(exc))
        result["promotion"] = promotion
        say(f"registry: {promotion['summary']}")
    versions = {label: registry.backend.get(name, v.version) for label, v in versions.items()}  # statuses now
    result["versions"] = {label: {"version": v.version, "status": v.status, "source": v.source, "aliases": v.aliases,
                                  "greedy_accuracy": v.lineage.eval_metrics.get("greedy_accuracy")}
                          for label, v in versions.items()}
    holder = registry.backend.alias_version(name, section.alias)
    result["alias_holder"] = {"alias": section.alias, "version": holder}
    for label, info in result["versions"].items():
        say(f"registry: {name}@{info['version']} ({label}, {info['status']}) -> {info['source']}")
    write_json(out / REGISTRY_FILE, result)
    return result
