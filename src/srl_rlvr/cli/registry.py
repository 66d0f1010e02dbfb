"""``srl-rlvr registry``: model versions with lineage, eval-gated promotion, rollback, an audited history.

    srl-rlvr registry register --name demo-math --model out/demo/models/srl_rlvr \
        --eval out/demo/eval/test/srl_rlvr/metrics.json
    srl-rlvr registry promote demo-math 2
    srl-rlvr registry history demo-math --alias champion --at 2026-12-01T12:00:00Z
    srl-rlvr registry audit verify

The registry is ``--registry URI`` or ``$SRL_RLVR_REGISTRY`` (see srl_rlvr.registry.location); every
command exits non-zero with one line on an unknown name or version, a gate refusal or a tampered log.
"""

from __future__ import annotations

import json

import click

_registry_option = click.option(
    "--registry", "registry_uri", default=None, metavar="URI",
    help="sqlite:////abs/registry.db, http://mlflow:5000 or sagemaker://PREFIX [default: $SRL_RLVR_REGISTRY, "
         "else a SQLite file in the srl-rlvr cache].")


def _open(uri: str | None):
    from srl_rlvr.registry.lifecycle import Registry

    return Registry.open(uri)


def _line(version) -> str:
    metrics = version.lineage.eval_metrics
    acc = (f"  acc {metrics['greedy_accuracy']:.3f} (n={int(metrics.get('n', 0))})"
           if "greedy_accuracy" in metrics else "")
    aliases = f"  @{' @'.join(version.aliases)}" if version.aliases else ""
    return (f"{version.ref:<24} {version.status:<10} {version.lineage.stage:<6} {version.lineage.kind:<8}"
            f"{acc}{aliases}")


@click.group("registry")
def registry_group() -> None:
    """Register trained models, promote them through an eval gate, roll back, audit.

    \b
    Example:
      srl-rlvr registry register --name demo-math --model out/demo/models/srl_rlvr \\
          --eval out/demo/eval/test/srl_rlvr/metrics.json
      srl-rlvr registry promote demo-math 1
    """


@registry_group.command("register")
@click.option("--name", required=True, help="Model name (letters, digits, hyphens).")
@click.option("--model", "model_dir", required=True, help="A finished stage's model folder (OUT/models/<label>).")
@click.option("--eval", "eval_metrics", default=None, help="metrics.json written by srl-rlvr eval for this model.")
@_registry_option
def register_command(name: str, model_dir: str, eval_metrics: str | None, registry_uri: str | None) -> None:
    """Add a version (status candidate) with its lineage and eval."""
    version = _open(registry_uri).register(name, model_dir, eval_metrics)
    click.echo(f"registered {version.ref} (candidate): {version.source}")


@registry_group.command("list")
@click.option("--name", default=None, help="Only this model.")
@_registry_option
def list_command(name: str | None, registry_uri: str | None) -> None:
    """Every version: status, stage, kind, eval accuracy, aliases."""
    registry = _open(registry_uri)
    names = [name] if name else registry.backend.names()
    if not names:
        click.echo(f"no models in {registry.backend.uri}")
    for each in names:
        for version in registry.backend.versions(each):
            click.echo(_line(version))


@registry_group.command("show")
@click.argument("ref", metavar="NAME@VERSION|NAME@ALIAS")
@_registry_option
def show_command(ref: str, registry_uri: str | None) -> None:
    """One version in full, as JSON (lineage included)."""
    from dataclasses import asdict

    from srl_rlvr.registry.base import parse_ref

    name, which = parse_ref(ref)
    version = _open(registry_uri).backend.resolve(name, which)
    click.echo(json.dumps(asdict(version), indent=2))


@registry_group.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True)
@click.option("--margin", default=0.0, show_default=True, help="Required mean gain over the current holder.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance of the one-sided paired test.")
@click.option("--force", is_flag=True, help="Override a refusing gate (needs --reason; audited).")
@click.option("--reason", default="", help="Why (required with --force).")
@_registry_option
def promote_command(name: str, version: str, alias: str, margin: float, alpha: float, force: bool, reason: str,
                    registry_uri: str | None) -> None:
    """Move ALIAS to VERSION if its eval beats the holder's (paired test on the same eval set)."""
    from srl_rlvr.registry.gate import GateSettings

    decision = _open(registry_uri).promote(name, version, alias, force=force, reason=reason,
                                           gate=GateSettings(margin=margin, alpha=alpha))
    forced = " (forced)" if force and not decision.passed else ""
    click.echo(f"{name}@{alias} -> {version}{forced}: {decision.summary}")


@registry_group.command("rollback")
@click.argument("name")
@click.option("--alias", default="champion", show_default=True)
@click.option("--reason", default="", help="Why (recorded in the audit log).")
@_registry_option
def rollback_command(name: str, alias: str, reason: str, registry_uri: str | None) -> None:
    """Move ALIAS back to the version that held it before."""
    previous = _open(registry_uri).rollback(name, alias, reason)
    click.echo(f"{name}@{alias} -> {previous} (rolled back)")


def _status_command(status: str, verb: str):
    @click.argument("name")
    @click.argument("version")
    @click.option("--reason", required=True, help="Why (recorded in the audit log).")
    @_registry_option
    def command(name: str, version: str, reason: str, registry_uri: str | None) -> None:
        _open(registry_uri).set_status(name, version, status, reason)
        click.echo(f"{name}@{version} {status}")

    command.__doc__ = f"{verb} a version (it loses its aliases)."
    return command


registry_group.command("reject")(_status_command("rejected", "Reject"))
registry_group.command("archive")(_status_command("archived", "Archive"))


@registry_group.command("history")
@click.argument("name")
@click.option("--alias", default=None, help="Only the moves of this alias.")
@click.option("--at", "at", default=None, metavar="TIME", help="Which version held --alias at TIME (ISO 8601).")
@_registry_option
def history_command(name: str, alias: str | None, at: str | None, registry_uri: str | None) -> None:
    """The audit log of NAME; with --alias and --at, the version that held the alias then."""
    registry = _open(registry_uri)
    if at is not None:
        if alias is None:
            raise click.UsageError("--at needs --alias")
        holder = registry.holder_at(name, alias, at)
        click.echo(f"{name}@{alias} at {at}: {holder if holder is not None else 'no version'}")
        return
    for entry in registry.history(name, alias):
        target = f"@{entry['alias']} " if entry.get("alias") else ""
        reason = f"  ({entry['reason']})" if entry.get("reason") else ""
        click.echo(f"{entry['time']}  {entry['actor']:<10} {entry['action']:<14} {target}v{entry.get('version')}"
                   f"{reason}")


@registry_group.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@_registry_option
def audit_verify_command(registry_uri: str | None) -> None:
    """Check every entry's hash and link, and the head the registry stores; exit 1 naming the bad line."""
    from srl_rlvr.registry.audit import AuditTampered

    registry = _open(registry_uri)
    try:
        count = registry.verify_audit()
    except AuditTampered as exc:
        click.echo(f"audit log {registry.audit.path}: TAMPERED: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"audit log {registry.audit.path}: {count} entries, chain and head intact")
