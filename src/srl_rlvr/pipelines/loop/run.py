"""``loop``: the traffic the small model could not handle becomes the trajectories it learns from next.

    srl-rlvr loop --config configs/loop-cpu.yaml --out out/loop

One turn, each step recorded (what it did, how long it took) in ``OUT/loop_report.json``, ``loop_report.md``
and ``loop_timeline.png``:

1. **bootstrap**: open the registry; with no version holding the alias, register ``registry.start_model``
   with its eval on the gate set and make it the first holder. The holder must have been evaluated on
   this gate set (the same problem ids), or the gate could not compare; fit the first router predictor.
2. **serve**: start ``srl-rlvr serve --model models:/NAME@ALIAS`` with the route config, the predictor
   and an escalation log (or use the running server at ``serve.url``).
3. **traffic**: send the traffic problems to the served cascade (``cascade-<route>``): the champion
   answers first, the verifier escalates what it is unsure of to the teacher tier, and the server logs
   each escalation.
4. **collect**: the escalations (and ``inputs``) become distill prompts (``collect.py``).
5. **distill**: ask the teacher (``tier-<route>-<teacher>`` on the server, or ``teacher.url``) for
   verified step-by-step solutions (:mod:`srl_rlvr.pipelines.distill`), decontaminated against the gate set.
6. **train**: the ``train`` stages (SRL, then RLVR) on the kept trajectories, starting from the champion's
   weights, then the eval of the result on the gate set (``srl-rlvr run``'s pipeline in ``OUT/train``).
7. **register** the result as a candidate; **gate**: promote it if it beats the holder on the gate set
   (paired test; ``registry.force_reason`` promotes regardless, audited as a forced promotion).
8. **hot_swap**: wait until the server answers with the alias holder's version, and ask it one problem.
9. **router**: refit the predictor on the tiers' gate outcomes (``refit.py``); the server reloads it.

With the CPU config the teacher is the demo solver, SIMULATED: the report, the server's headers and the
route config say so.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from srl_rlvr.core.console import rule, say
from srl_rlvr.core.io import sha256_file, write_json
from srl_rlvr.data.srl import write_jsonl
from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.loop.config import LoopConfig, candidate_label
from srl_rlvr.pipelines.register import same_version
from srl_rlvr.registry.gate import ids_digest

REPORT_JSON, REPORT_MD, TIMELINE = "loop_report.json", "loop_report.md", "loop_timeline.png"


class LoopStopped(UserInputError):
    """The loop ended early on purpose (e.g. nothing to learn from); the report says why."""


# --- small helpers ----------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _api_key(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise UserInputError(f"the API key variable {env} is not set")
    return value


class Steps:
    """Each step's record, timed; the report is rewritten after every step, so a failed run still has one."""

    def __init__(self, out: Path, header: dict[str, Any]):
        self.out, self.header, self.records = out, header, []
        self.started = time.perf_counter()

    def run(self, name: str, fn, *args, **kwargs) -> Any:
        rule(f"loop: {name}")
        start = time.perf_counter()
        record: dict[str, Any] = {"step": name}
        self.records.append(record)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record.update(seconds=round(time.perf_counter() - start, 2), status="failed", error=str(exc))
            self.write()
            raise
        record.update(seconds=round(time.perf_counter() - start, 2), status="done", **(result or {}))
        say(f"loop: {name}: {record.get('summary', 'done')} ({record['seconds']:.1f}s)")
        self.write()
        return result

    def report(self) -> dict[str, Any]:
        return {**self.header, "steps": self.records, "total_seconds": round(time.perf_counter() - self.started, 2),
                "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def write(self) -> dict[str, Any]:
        report = self.report()
        write_json(self.out / REPORT_JSON, report)
        (self.out / REPORT_MD).write_text(_markdown(report), encoding="utf-8")
        return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Loop turn: {report['name']}@{report['alias']}", "",
             f"Command: `{report['command']}`", "",
             f"Teacher: {report['teacher']}", "",
             "| step | status | seconds | what it did |", "|---|---|---|---|"]
    for r in report["steps"]:
        lines.append(f"| {r['step']} | {r['status']} | {r['seconds']:.1f} | "
                     f"{(r.get('summary') or r.get('error') or '').replace('|', '/')} |")
    lines += ["", f"Total: {report['total_seconds']:.1f} s.", "", f"![steps]({TIMELINE})", ""]
    return "\n".join(lines)


def _timeline(report: dict[str, Any], path: Path) -> None:
    from srl_rlvr.core.plotting import headless_pyplot

    plt = headless_pyplot()
    steps = report["steps"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(steps) + 1.2))
    start = 0.0
    for i, r in enumerate(steps):
        color = "#c0392b" if r["status"] == "failed" else "#2e86c1"
        ax.barh(i, r["seconds"], left=start, color=color)
        ax.text(start + r["seconds"], i, f" {r['seconds']:.0f}s", va="center", fontsize=8)
        start += r["seconds"]
    ax.set_yticks(range(len(steps)), [r["step"] for r in steps])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the loop started")
    ax.set_title(f"srl-rlvr loop: {report['name']}@{report['alias']} ({report['total_seconds']:.0f} s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the steps --------------------------------------------------------------------------------------------
class Loop:
    def __init__(self, config: LoopConfig, out: Path, command: str):
        from srl_rlvr.pipelines.config import load_pipeline_config

        self.config, self.out, self.command = config, out, command
        self.uri = config.registry.uri or f"sqlite:///{(out / 'registry' / 'registry.db').resolve()}"
        self.name, self.alias = config.registry.name, config.registry.alias
        self.route = None
        if config.serve.route_config:
            from srl_rlvr.routing.config import load_route_config

            self.route = load_route_config(config.serve.route_config)
        stages = list(config.train.get("stages") or ["srl", "rlvr"])
        self.label = candidate_label(stages)
        fragment = {k: v for k, v in copy.deepcopy(config.train).items() if k != "stages"}
        self.train_fragment, self.stages = fragment, stages
        # The eval settings of the training pipeline's tier: the start model is evaluated with the same ones
        self.eval_config = load_pipeline_config(None, {**fragment, "stages": stages}).eval.eval_config()
        self.server = None
        self.url: str | None = config.serve.url
        self.api_key = _api_key(config.serve.api_key_env)
        self.predictor_path = out / "router" / "predictor.json"
        self.escalation_log = out / "serve" / "escalations.jsonl"

    @property
    def teacher_label(self) -> str:
        if self.config.teacher.url is not None:
            return f"{self.config.teacher.model} at {self.config.teacher.url}"
        tier = self._teacher_tier()
        return f"tier '{tier.name}' of {self.route.source}" + (" (SIMULATED)" if tier.simulated else "")

    def _teacher_tier(self):
        names = {s.tier.name: s.tier for s in self.route.tiers}
        if self.config.teacher.tier not in names:
            raise UserInputError(f"teacher.tier {self.config.teacher.tier!r} is not a tier of {self.route.source} "
                                 f"({', '.join(names)})")
        return names[self.config.teacher.tier]

    def registry(self):
        from srl_rlvr.registry.lifecycle import Registry

        return Registry.open(self.uri)

    # 0: the data --------------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from srl_rlvr.data.demo.splits import make_demo_splits

        d = self.config.data
        folder = self.out / "data"
        if d.demo is not None:
            g = d.demo
            splits = make_demo_splits(n_train=max(g.n_traffic, 1), n_dev=0, n_test=g.n_gate, n_transfer=0,
                                      seed=g.seed, min_ops=g.min_ops, max_ops=g.max_ops, numbers=g.numbers)
            self.gate_file, self.traffic_file = folder / "gate.jsonl", folder / "traffic.jsonl"
            write_jsonl(self.gate_file, splits["test"])
            write_jsonl(self.traffic_file, splits["train"][: g.n_traffic])
        else:
            self.gate_file = Path(d.gate)
            self.traffic_file = Path(d.traffic) if d.traffic else None
        self.gate_rows = _read_jsonl(self.gate_file)
        if not self.gate_rows or any("answer" not in r for r in self.gate_rows):
            raise UserInputError(f"{self.gate_file}: the gate set needs rows, each with an 'answer'")
        traffic = len(_read_jsonl(self.traffic_file)) if self.traffic_file else 0
        return {"summary": f"gate set {self.gate_file} (n={len(self.gate_rows)}), traffic {traffic} problems",
                "gate": str(self.gate_file), "gate_n": len(self.gate_rows), "traffic_n": traffic}

    # 1: bootstrap -------------------------------------------------------------------------------------
    def _evaluate(self, model: str, folder: Path) -> Path:
        from srl_rlvr.eval import harness
        from srl_rlvr.pipelines.data import read_trajectories

        result = harness.evaluate(model, read_trajectories(self.gate_file), self.eval_config)
        harness.write_eval_outputs(result, folder)
        return folder / "metrics.json"

    def bootstrap(self) -> dict[str, Any]:
        from srl_rlvr.models import resolve_model

        registry = self.registry()
        holder = registry.backend.alias_version(self.name, self.alias) if self.name in registry.backend.names() \
            else None
        if holder is None:
            start = resolve_model(self.config.registry.start_model)
            metrics = self._evaluate(start, self.out / "bootstrap" / "eval")
            version = registry.register(self.name, start, eval_metrics=metrics, stage="base")
            registry.promote(self.name, version.version, self.alias,
                             reason=f"loop bootstrap: {self.config.registry.start_model} is the first holder")
            holder = version.version
            how = f"registered {self.config.registry.start_model} as v{holder}, the first {self.alias}"
        else:
            how = f"{self.name}@{self.alias} is v{holder}"
        champion = registry.backend.get(self.name, holder)
        if champion.lineage.eval_set_digest != ids_digest(r["id"] for r in self.gate_rows):
            raise UserInputError(f"{champion.ref} was evaluated on another eval set than {self.gate_file}, so the "
                                 "gate cannot compare a candidate with it; set data.gate to the set it was "
                                 "registered with (srl-rlvr registry show) or start a new registry")
        self.champion = champion
        fitted = self._refit(champion) if self.route is not None and not self.predictor_path.exists() else None
        acc = champion.lineage.eval_metrics.get("greedy_accuracy")
        return {"summary": f"{how}; gate accuracy {acc:.3f}", "champion": holder, "champion_source": champion.source,
                "champion_accuracy": acc, "router": fitted}

    # 2: serve -----------------------------------------------------------------------------------------
    def serve(self, stack: ExitStack) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.server import ServerProcess, served_version

        if self.url is None:
            s = self.config.serve
            self.server = ServerProcess(f"models:/{self.name}@{self.alias}", self.uri, s.route_config,
                                        self.predictor_path, self.escalation_log, self.out / "serve",
                                        poll_s=s.poll_s, startup_timeout_s=s.startup_timeout_s)
            stack.enter_context(self.server)
            self.url = self.server.url
            how = f"started `{' '.join(self.server.command()[2:])}` (log {self.server.log_path})"
        else:
            how = f"the running server at {self.url}"
        version = served_version(self.url, self.api_key, self.name)
        if version != self.champion.version:
            raise UserInputError(f"the server at {self.url} answers {self.name!r} with version {version}, not the "
                                 f"{self.alias} v{self.champion.version}: serve models:/{self.name}@{self.alias}")
        return {"summary": f"{how}; answering {self.name} v{version}", "url": self.url, "version": version}

    # 3: traffic ---------------------------------------------------------------------------------------
    def traffic(self) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.server import chat
        from srl_rlvr.prompts import full_problem_messages
        from srl_rlvr.rewards.math import math_answer_reward

        if self.traffic_file is None or self.route is None:
            return {"summary": "no traffic configured", "requests": 0}
        rows = _read_jsonl(self.traffic_file)
        model = self.config.traffic.model or f"cascade-{self.route.name}"
        t = self.config.traffic

        def ask(row: dict[str, Any]) -> dict[str, Any]:
            body, headers = chat(self.url, self.api_key, model, full_problem_messages(row["problem"]), t.max_tokens)
            text = body["choices"][0]["message"].get("content") or ""
            low = {k.lower(): v for k, v in headers.items()}
            return {"tier": low.get("x-srl-rlvr-tier"), "escalations": int(low.get("x-srl-rlvr-escalations", 0)),
                    "correct": math_answer_reward(text, str(row.get("answer", ""))) == 1.0 if "answer" in row
                    else None}

        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=t.concurrency) as pool:
            results = list(tqdm(pool.map(ask, rows), total=len(rows), desc="traffic", unit="request"))
        tiers: dict[str, int] = {}
        for r in results:
            tiers[r["tier"]] = tiers.get(r["tier"], 0) + 1
        escalated = sum(1 for r in results if r["escalations"])
        scored = [r["correct"] for r in results if r["correct"] is not None]
        accuracy = sum(scored) / len(scored) if scored else None
        acc_text = f", served accuracy {accuracy:.3f}" if accuracy is not None else ""
        return {"summary": f"{len(rows)} requests to {model}: {escalated} escalated; answered by "
                           f"{', '.join(f'{k} {v}' for k, v in sorted(tiers.items()))}{acc_text}",
                "model": model, "requests": len(rows), "escalated": escalated, "answered_by": tiers,
                "served_accuracy": accuracy}

    # 4-5: collect and distill -------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.collect import collect_prompts

        i = self.config.inputs
        logs = ([self.escalation_log] if self.server is not None else []) + [Path(p) for p in i.escalations]
        counts = collect_prompts(logs, [Path(p) for p in i.prompts], self.out / "distill_prompts.jsonl",
                                 only_verified=i.only_verified)
        self.prompts_file = Path(counts["file"])
        return {"summary": f"{counts['prompts']} prompts ({counts.get('from_escalation', 0)} escalations, "
                           f"{counts.get('from_prompts', 0)} from prompt files)", "counts": counts}

    def distill(self) -> dict[str, Any]:
        from srl_rlvr.pipelines.distill import distill

        t = self.config.teacher
        if not _read_jsonl(self.prompts_file):
            raise LoopStopped("nothing to distill: no escalation and no prompt reached the loop "
                              "(the champion handled all the traffic, or there was none)")
        url = t.url or self.url
        model = t.model or f"tier-{self.route.name}-{self._teacher_tier().name}"
        key_env = t.api_key_env or (self.config.serve.api_key_env if t.url is None else None)
        manifest = distill(self.prompts_file, self.out / "distill", url, model, samples=t.samples,
                           max_attempts=t.max_attempts, api_key_env=key_env, concurrency=t.concurrency,
                           temperature=t.temperature, max_tokens=t.max_tokens, decontaminate=[self.gate_file])
        c = manifest["counts"]
        self.trajectories = self.out / "distill" / "trajectories.jsonl"
        summary = (f"{c['kept']} trajectories kept of {c['samples_answered']} samples from {model}; rejected "
                   + ", ".join(f"{k} {v}" for k, v in c["rejected"].items() if v) if any(c["rejected"].values())
                   else f"{c['kept']} trajectories kept of {c['samples_answered']} samples from {model}")
        result = {"summary": summary, "teacher_model": model, "teacher_url": url, "counts": c,
                  "manifest": str(self.out / "distill" / "manifest.json")}
        if c["kept"] < t.min_kept:
            raise LoopStopped(f"distill kept {c['kept']} trajectories, fewer than teacher.min_kept={t.min_kept}: "
                              f"too little to train on ({self.out / 'distill' / 'manifest.json'})")
        return result

    # 6: train -----------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        from srl_rlvr.core.yamlconf import deep_merge
        from srl_rlvr.pipelines.config import load_pipeline_config
        from srl_rlvr.pipelines.run import run_pipeline

        overrides = deep_merge(self.train_fragment, {
            "model": self.champion.source, "stages": [*self.stages, "eval"],
            "data": {"train": str(self.trajectories), "test": str(self.gate_file)},
            "eval": {"models": [self.label], "sets": ["test"]}, "registry": {"enabled": False}})
        pconfig = load_pipeline_config(None, overrides)
        report = run_pipeline(pconfig, self.out / "train", command=self.command + "  # train step")
        self.candidate_dir = self.out / "train" / "models" / self.label
        self.candidate_metrics = self.out / "train" / "eval" / "test" / self.label / "metrics.json"
        metrics = json.loads(self.candidate_metrics.read_text(encoding="utf-8"))
        acc = metrics.get("greedy_accuracy")
        held = self.champion.lineage.eval_metrics.get("greedy_accuracy")
        return {"summary": f"{' -> '.join(self.stages)} from v{self.champion.version} on {self.trajectories.name}; "
                           f"gate-set accuracy {acc:.3f} (champion {held:.3f})",
                "stages": self.stages, "from_version": self.champion.version, "model": str(self.candidate_dir),
                "accuracy": acc, "timings_s": report.get("timings_s")}

    # 7: register and gate -----------------------------------------------------------------------------
    def register(self) -> dict[str, Any]:
        from srl_rlvr.registry.lineage import lineage_of

        registry = self.registry()
        lineage = lineage_of(self.candidate_dir, self.candidate_metrics)
        source = str(self.candidate_dir.resolve())
        for known in registry.backend.versions(self.name):  # a rerun of a finished turn registers nothing new
            if same_version(known, source, lineage.eval_set_digest, lineage.eval_metrics):
                self.candidate = known
                return {"summary": f"{known.ref} is this candidate already ({known.status})",
                        "version": known.version}
        version = registry.register(self.name, self.candidate_dir, lineage=lineage)
        self.candidate = version
        return {"summary": f"registered {version.ref} ({version.status})", "version": version.version}

    def gate(self) -> dict[str, Any]:
        from srl_rlvr.registry.base import RegistryError
        from srl_rlvr.registry.gate import GateSettings

        r = self.config.registry
        registry = self.registry()
        settings = GateSettings(margin=r.margin, alpha=r.alpha)
        try:
            decision = registry.promote(self.name, self.candidate.version, self.alias, gate=settings,
                                        force=r.force_reason is not None, reason=r.force_reason or "")
            forced = r.force_reason is not None and not decision.passed
            promoted, summary, numbers = True, decision.summary, decision.numbers
        except RegistryError as exc:
            promoted, forced, summary, numbers = False, False, str(exc), {}
        holder = registry.backend.alias_version(self.name, self.alias)
        self.holder = registry.backend.get(self.name, holder)
        verdict = ("forced promotion (gate refused; reason: " + str(r.force_reason) + ")" if forced
                   else "promoted" if promoted else "refused")
        return {"summary": f"{verdict}: {summary}; {self.alias} is v{holder}", "promoted": promoted,
                "forced": forced, "decision": summary, "numbers": numbers, "holder": holder}

    # 8: hot-swap --------------------------------------------------------------------------------------
    def hot_swap(self) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.server import chat, served_version, wait_for_version
        from srl_rlvr.prompts import full_problem_messages

        waited = wait_for_version(self.url, self.api_key, self.name, self.holder.version,
                                  self.config.serve.swap_timeout_s)
        row = self.gate_rows[0]
        body, _ = chat(self.url, self.api_key, self.name, full_problem_messages(row["problem"]),
                       self.config.traffic.max_tokens)
        after = served_version(self.url, self.api_key, self.name)
        swapped = self.holder.version != self.champion.version
        text = (body["choices"][0]["message"].get("content") or "")[:300]
        what = f"swapped v{self.champion.version} -> v{after}" if swapped else f"still v{after} (no promotion)"
        return {"summary": f"server {what} within {waited:.1f}s; answered one gate problem",
                "served_version": after, "swapped": swapped, "seconds_to_swap": round(waited, 2),
                "probe": {"problem": row["problem"], "answer": row["answer"], "completion": text}}

    # 9: router ----------------------------------------------------------------------------------------
    def _refit(self, champion) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.refit import refit_predictor

        return refit_predictor(self.route, self.gate_rows, Path(champion.lineage.eval_predictions),
                               {self.name, champion.source}, self.predictor_path)

    def router(self) -> dict[str, Any]:
        from srl_rlvr.pipelines.loop.server import cards

        if self.route is None:
            return {"summary": "no route config: nothing to refit"}
        before = sha256_file(self.predictor_path) if self.predictor_path.exists() else None
        fitted = self._refit(self.holder)
        after = sha256_file(self.predictor_path)
        router_card = next((c for c in cards(self.url, self.api_key).values() if "predictor" in c), {})
        loaded = (router_card.get("predictor") or {}).get("sha256")
        rates = ", ".join(f"{k} {v['success_rate']:.2f}" for k, v in fitted["tiers"].items() if "success_rate" in v)
        change = "changed" if after != before else "unchanged (same outcomes)"
        return {"summary": f"refitted on n={fitted['n']} gate problems ({rates}); predictor {change}; the server "
                           f"{'loaded it' if loaded == after else 'did not load it'}",
                "fitted": fitted, "predictor_sha256": after, "server_loaded": loaded == after}


def run_loop(config: LoopConfig, out: str | Path, command: str | None = None) -> dict[str, Any]:
    """One turn of the loop into ``out``; return the report (also written as OUT/loop_report.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or f"srl-rlvr loop --config {config.source} --out {out}"
    loop = Loop(config, out, command)
    teacher = loop.teacher_label if (config.teacher.url or loop.route) else "none"
    steps = Steps(out, {"name": loop.name, "alias": loop.alias, "registry": loop.uri, "command": command,
                        "teacher": teacher, "config": config.source})
    try:
        with ExitStack() as stack:
            steps.run("data", loop.data)
            steps.run("bootstrap", loop.bootstrap)
            steps.run("serve", loop.serve, stack)
            steps.run("traffic", loop.traffic)
            steps.run("collect", loop.collect)
            steps.run("distill", loop.distill)
            steps.run("train", loop.train)
            steps.run("register", loop.register)
            steps.run("gate", loop.gate)
            steps.run("hot_swap", loop.hot_swap)
            steps.run("router", loop.router)
    finally:
        report = steps.write()
        try:
            _timeline(report, out / TIMELINE)
        except Exception as exc:  # noqa: BLE001 - a plot must not hide the loop's own outcome
            say(f"loop: timeline plot not written ({exc})")
    say(f"loop: report {out / REPORT_MD} ({report['total_seconds']:.0f} s)")
    return report


__all__ = ["LoopStopped", "run_loop"]
