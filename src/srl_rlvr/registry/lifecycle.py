"""The lifecycle of a registered model: register → (gate) promote → rollback, reject, archive; audited.

    srl-rlvr registry register --name demo-math --model out/demo/models/srl_rlvr \
        --eval out/demo/eval/test/srl_rlvr/metrics.json
    srl-rlvr registry promote demo-math 2
    srl-rlvr registry rollback demo-math
    srl-rlvr registry history demo-math --alias champion --at 2026-12-01T12:00:00Z

Every change goes to the audit log first checked, then written: a log that fails verification (against
its head, kept in the registry itself) blocks every change until someone looks. ``rollback`` moves the
alias back to the version that held it before the current one, as the audit log records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srl_rlvr.registry.audit import AuditLog
from srl_rlvr.registry.base import (
    CHAMPION,
    Lineage,
    RegistryBackend,
    RegistryError,
    check_alias,
    check_name,
)
from srl_rlvr.registry.gate import GateDecision, GateSettings, evaluate_gate
from srl_rlvr.registry.lineage import lineage_of

AUDIT_HEAD = "audit_head"  # registry meta key: "<count>:<hash>" of the audit log's last entry


@dataclass
class Registry:
    backend: RegistryBackend
    audit: AuditLog

    @classmethod
    def open(cls, uri: str | None = None) -> Registry:
        from srl_rlvr.registry.location import audit_path, open_backend, registry_uri

        resolved = registry_uri(uri)
        return cls(open_backend(resolved), AuditLog(audit_path(resolved)))

    # --- the audit log ---------------------------------------------------------------------------------
    def expected_head(self) -> tuple[int, str] | None:
        stored = self.backend.get_meta(AUDIT_HEAD)
        if not stored:
            return None
        count, _, digest = stored.partition(":")
        return int(count), digest

    def verify_audit(self) -> int:
        """The number of entries; raises AuditTampered naming the first bad line."""
        return self.audit.verify(self.expected_head())

    def _record(self, action: str, name: str, version: str | None, *, reason: str = "", alias: str | None = None,
                details: dict | None = None, actor: str | None = None) -> None:
        # every change verified the log (with its head) before touching the backend; append checks the chain
        self.audit.append(action, name, version, actor=actor, reason=reason, alias=alias, details=details)
        count, digest = self.audit.head()
        self.backend.set_meta(AUDIT_HEAD, f"{count}:{digest}")

    # --- changes ---------------------------------------------------------------------------------------
    def register(self, name: str, model_dir: str | Path, eval_metrics: str | Path | None = None,
                 stage: str | None = None, actor: str | None = None, lineage: Lineage | None = None):
        """A new candidate version; ``lineage`` when the caller already read it (else from the folder)."""
        check_name(name)
        self.verify_audit()  # before the backend changes, so a tampered log blocks the change itself
        lineage = lineage or lineage_of(model_dir, eval_metrics, stage)
        version = self.backend.register(name, str(Path(model_dir).resolve()), lineage)
        self._record("register", name, version.version, actor=actor,
                     details={"source": version.source, "stage": lineage.stage, "kind": lineage.kind,
                              "eval": lineage.eval_metrics.get("greedy_accuracy")})
        return version

    def promote(self, name: str, version: str, alias: str = CHAMPION, *, force: bool = False, reason: str = "",
                gate: GateSettings | None = None, actor: str | None = None,
                baseline: str | None = None) -> GateDecision:
        """Move ``alias`` to ``version`` if the gate passes (or ``force`` with a reason); refuse otherwise.

        The gate compares with the alias's holder; with no holder, with ``baseline`` when given (e.g. the
        base model of the same run), else a candidate with eval metrics passes (the first holder)."""
        check_alias(alias)
        if force and not reason.strip():
            raise RegistryError("--force needs --reason: an override without a reason is not auditable")
        self.verify_audit()
        candidate = self.backend.get(name, version)
        if candidate.status in ("rejected", "archived") and not force:
            raise RegistryError(f"{candidate.ref} is {candidate.status}; only --force --reason can promote it")
        holder_version = self.backend.alias_version(name, alias)
        compared = holder_version or baseline
        holder = self.backend.get(name, compared) if compared else None
        decision = evaluate_gate(candidate, holder, gate or GateSettings())
        if not decision.passed and not force:
            raise RegistryError(f"{name}@{alias}: {decision.summary}")
        self.backend.set_alias(name, alias, candidate.version)
        self.backend.set_status(name, candidate.version, "approved")
        self._record("force_promote" if force and not decision.passed else "promote", name, candidate.version,
                     alias=alias, reason=reason, actor=actor,
                     details={"from": holder_version, "compared_with": compared, "gate": decision.summary,
                              "gate_passed": decision.passed, "numbers": decision.numbers})
        return decision

    def rollback(self, name: str, alias: str = CHAMPION, reason: str = "", actor: str | None = None) -> str:
        """Move ``alias`` back to the version that held it before the current one; return that version."""
        check_alias(alias)
        self.verify_audit()
        current = self.backend.alias_version(name, alias)
        if current is None:
            raise RegistryError(f"{name}@{alias}: no version holds it, nothing to roll back")
        previous = None
        for _, held in reversed(self.audit.alias_history(name, alias)):
            if held is not None and held != current:
                previous = held
                break
        if previous is None:
            raise RegistryError(f"{name}@{alias}: version {current} is the first to hold it; nothing to roll back to")
        self.backend.set_alias(name, alias, previous)
        self._record("rollback", name, previous, alias=alias, reason=reason, actor=actor, details={"from": current})
        return previous

    def set_status(self, name: str, version: str, status: str, reason: str = "", actor: str | None = None) -> None:
        """reject or archive a version (it loses every alias it holds)."""
        if status not in ("rejected", "archived"):
            raise RegistryError(f"status {status!r}: reject or archive")
        self.verify_audit()
        target = self.backend.get(name, version)
        for alias in list(target.aliases):
            self.backend.delete_alias(name, alias)
            self._record("alias_removed", name, None, alias=alias, reason=f"{target.ref} {status}", actor=actor)
        self.backend.set_status(name, version, status)
        self._record("reject" if status == "rejected" else "archive", name, version, reason=reason, actor=actor)

    # --- questions -------------------------------------------------------------------------------------
    def holder_at(self, name: str, alias: str, at) -> str | None:
        self.verify_audit()
        return self.audit.holder_at(name, alias, at)

    def history(self, name: str, alias: str | None = None) -> list[dict]:
        self.verify_audit()
        return [e for e in self.audit.entries()
                if e.get("name") == name and (alias is None or e.get("alias") == alias)]
