"""``srl-rlvr monitor``: the metrics catalog and what is generated from it; dashboards; CloudWatch.

    srl-rlvr monitor catalog
    srl-rlvr monitor generate --out infra/monitoring
    srl-rlvr monitor dashboard --prometheus http://127.0.0.1:9090 --out out/dashboard
    srl-rlvr monitor publish --cloudwatch SrlRlvr --source http://127.0.0.1:8000/metrics

See docs/monitoring.md.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("monitor")
def monitor_group() -> None:
    """Metrics catalog, alert rules, dashboards and the CloudWatch publisher.

    \b
    Example:
      srl-rlvr monitor generate --out infra/monitoring
    """


@monitor_group.command("catalog")
def catalog_command() -> None:
    """Every metric: name, type, unit, labels, meaning (Markdown)."""
    from srl_rlvr.monitoring.catalog import markdown_table

    click.echo(markdown_table())


@monitor_group.command("generate")
@click.option("--out", "out_dir", default="infra/monitoring", show_default=True,
              help="Folder for prometheus/, grafana/ and cloudwatch/.")
@click.option("--terraform", "terraform_dir", default=None, metavar="DIR",
              help="Also write DIR/monitoring.tf (the CloudWatch alarms and dashboard as Terraform), "
                   "e.g. infra/terraform.")
def generate_command(out_dir: str, terraform_dir: str | None) -> None:
    """Write the alert rules (and their promtool tests), Grafana dashboards and CloudWatch definitions."""
    from srl_rlvr.monitoring.cloudwatch import write_definitions
    from srl_rlvr.monitoring.grafana import write_dashboards
    from srl_rlvr.monitoring.rules import write_rules

    out = Path(out_dir)
    paths = [*write_rules(out / "prometheus"), *write_dashboards(out / "grafana"),
             *write_definitions(out / "cloudwatch")]
    if terraform_dir:
        from srl_rlvr.monitoring.terraform import write_terraform

        paths.append(write_terraform(Path(terraform_dir)))
    for path in paths:
        click.echo(f"wrote {path}")


@monitor_group.command("dashboard")
@click.option("--prometheus", "prometheus_url", required=True, help="Prometheus base URL (http://host:9090).")
@click.option("--out", "out_dir", required=True, help="Folder for index.html and the panel PNGs.")
@click.option("--window", "window_s", default=3600, show_default=True, help="Seconds of history per panel.")
def dashboard_command(prometheus_url: str, out_dir: str, window_s: int) -> None:
    """Render the training, cost and performance panels as PNGs in one HTML page (no Grafana needed)."""
    from srl_rlvr.monitoring.dashboard import render

    click.echo(str(render(prometheus_url, Path(out_dir), window_s=window_s)))


@monitor_group.command("publish")
@click.option("--cloudwatch", "namespace", required=True, help="CloudWatch namespace, e.g. SrlRlvr.")
@click.option("--source", required=True, help="A /metrics URL or a Prometheus text file (training's metrics.prom).")
@click.option("--endpoint-url", default=None, help="CloudWatch endpoint (default: boto3's, e.g. AWS_ENDPOINT_URL).")
@click.option("--every", "every_s", default=None, type=float, help="Publish every N seconds until interrupted.")
def publish_command(namespace: str, source: str, endpoint_url: str | None, every_s: float | None) -> None:
    """Send the catalog's metrics from SOURCE to CloudWatch (batched; non-finite values dropped and counted)."""
    import time

    from srl_rlvr.monitoring.cloudwatch import publish

    while True:
        result = publish(namespace, source, endpoint_url=endpoint_url)
        click.echo(f"published {result.sent} values in {result.batches} request(s) to {namespace}; "
                   f"dropped {result.dropped_nonfinite} non-finite")
        if every_s is None:
            return
        time.sleep(every_s)
