"""Training metrics while a stage runs: a Prometheus text file per stage, and optionally a port.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --set monitoring.port=9108
    prometheus-node-exporter --collector.textfile.directory out/demo/srl      # or scrape :9108 directly

Every logged step rewrites ``OUT/<stage>/metrics.prom`` atomically (node exporter's textfile collector
format, so a node exporter on the training machine serves it) with the catalog's ``srl_rlvr_training_*``
metrics: step and max steps, loss, reward mean/std, format-OK and informative ratios, entropy, tokens/s,
step seconds, the newest checkpoint's time, recoveries by kind, and cost so far and at completion from
the tier's ``price_per_hour``. ``monitoring.port`` also serves them over HTTP from the training process
(prometheus_client's own server; one port per process). Nothing here imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.monitoring.catalog import build

TEXTFILE = "metrics.prom"

# logged key (TRL / our callbacks) -> catalog gauge
LOGGED = {
    "loss": "srl_rlvr_training_loss",
    "reward": "srl_rlvr_training_reward_mean",
    "reward_std": "srl_rlvr_training_reward_std",
    "entropy": "srl_rlvr_training_entropy",
    "tokens_per_s": "srl_rlvr_training_tokens_per_second",
    "step_time": "srl_rlvr_training_step_seconds",
    "dynamic_sampling/informative_fraction": "srl_rlvr_training_informative_ratio",
}
FORMAT_OK_KEYS = ("rewards/srl_format_ok/mean", "rewards/srl_format_ok")


@dataclass
class MonitoringSettings:
    """The pipeline YAML's ``monitoring:`` section."""

    port: int | None = field(default=None, metadata={"help": "Also serve the training metrics on this port."})
    budget_usd: float | None = field(default=None, metadata={"help": "A stage's budget: the spend alerts compare "
                                                                      "cost with it."})
    textfile: bool = field(default=True, metadata={"help": "Write OUT/<stage>/metrics.prom on every logged step."})


class TrainingExporter:
    """The gauges and counters of one stage, from the catalog, in a registry of their own."""

    def __init__(self, folder: Path, stage: str, *, max_steps: int, price_per_hour: float = 0.0,
                 budget_usd: float | None = None, port: int | None = None, textfile: bool = True):
        from prometheus_client import CollectorRegistry

        self.folder, self.stage, self.textfile = Path(folder), stage, textfile
        self.price_per_hour, self.max_steps = float(price_per_hour or 0.0), max_steps
        self.registry = CollectorRegistry()
        names = ["srl_rlvr_training_global_step", "srl_rlvr_training_max_steps",
                 "srl_rlvr_training_last_step_timestamp_seconds", "srl_rlvr_training_format_ok_ratio",
                 "srl_rlvr_training_last_checkpoint_timestamp_seconds", "srl_rlvr_training_cost_usd",
                 "srl_rlvr_training_cost_estimate_usd", "srl_rlvr_training_budget_usd", *LOGGED.values()]
        self.gauges = {name: build(name, self.registry).labels(stage) for name in dict.fromkeys(names)}
        self.recoveries = build("srl_rlvr_training_recoveries", self.registry)
        self._recovery_counts: dict[str, int] = {}
        self.started = time.time()
        self.gauges["srl_rlvr_training_max_steps"].set(max_steps)
        self.gauges["srl_rlvr_training_budget_usd"].set(float("nan") if budget_usd is None else budget_usd)
        self.gauges["srl_rlvr_training_global_step"].set(0)
        self._update_cost(0)
        if port is not None:
            from prometheus_client import start_http_server

            start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def _update_cost(self, step: int) -> None:
        hours = (time.time() - self.started) / 3600.0
        spent = self.price_per_hour * hours
        self.gauges["srl_rlvr_training_cost_usd"].set(spent)
        if step > 0 and self.max_steps > 0:
            per_step = hours / step
            estimate = spent + self.price_per_hour * per_step * max(0, self.max_steps - step)
        else:
            estimate = float("nan")  # no step rate yet
        self.gauges["srl_rlvr_training_cost_estimate_usd"].set(estimate)

    def on_log(self, step: int, logs: dict[str, Any]) -> None:
        self.gauges["srl_rlvr_training_global_step"].set(step)
        self.gauges["srl_rlvr_training_last_step_timestamp_seconds"].set(time.time())
        for key, name in LOGGED.items():
            value = logs.get(key)
            if isinstance(value, (int, float)):
                self.gauges[name].set(float(value))
        format_ok = next((logs[k] for k in FORMAT_OK_KEYS if isinstance(logs.get(k), (int, float))), None)
        if format_ok is not None:
            self.gauges["srl_rlvr_training_format_ok_ratio"].set(float(format_ok))
        self._update_cost(step)
        self.write()

    def set_max_steps(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.gauges["srl_rlvr_training_max_steps"].set(max_steps)

    def on_checkpoint(self) -> None:
        self.gauges["srl_rlvr_training_last_checkpoint_timestamp_seconds"].set(time.time())
        self.write()

    def set_recoveries(self, entries: list[dict[str, Any]]) -> None:
        from srl_rlvr.ops.failures import counts_by_reason

        counts = counts_by_reason(entries)
        for reason, count in counts.items():
            grown = count - self._recovery_counts.get(reason, 0)
            if grown > 0:
                self.recoveries.labels(reason, self.stage).inc(grown)
        self._recovery_counts = counts
        self.write()

    def write(self) -> None:
        if not self.textfile:
            return
        from prometheus_client import write_to_textfile

        self.folder.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.folder / TEXTFILE), self.registry)  # atomic: temp file + rename
