"""The pipeline: data → SRL → RLVR (→ SFT baseline) → eval → report, each stage feeding the next.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo [--resume] [--only srl,rlvr] [--set srl.max_steps=5]

Layout of OUT::

    data/            train.jsonl, test.jsonl, dev.jsonl, transfer.jsonl (trajectory format; the demo writes all
                     four, other data the ones configured), srl_train.jsonl (SRL instances)
    srl/ rlvr/ sft/  checkpoint-*/, final/ (loadable model + srl_rlvr_stage.json), log_history.json, _DONE.json
    eval/<set>/<label>/  metrics.json, predictions.jsonl, _DONE.json  (set: eval.sets; label: base, srl, srl_rlvr, sft)
    models/          srl/, srl_rlvr/: copies of the finals (hard links where the filesystem allows)
    report.json, report.md, reward_curves.png, accuracy.png, config.yaml (the merged config)

Reruns are incremental: a stage whose ``_DONE.json`` records the same config hash is skipped; a changed
config (or a changed upstream stage or data) re-runs it. A stage that was interrupted starts over,
unless ``resume`` is set, in which case it continues from its last complete ``checkpoint-*``.

Under a distributed launch (``accelerate launch``/``torchrun`` start this in every process) all ranks
train, but only the main process writes OUT's bookkeeping, data, eval, report and model copies; the
others wait at barriers and read its decisions from disk, so OUT must be on a file system all nodes see.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.config import EVAL_SETS, PipelineConfig
from srl_rlvr.errors import UserInputError
from srl_rlvr.training.stages import FINAL, MANIFEST, train_rlvr, train_srl

DONE = "_DONE.json"
STARTED = "_STARTED.json"  # hash of the run in progress, so --resume never continues a different config
MODEL_LABEL_STAGE = {"srl": "srl", "srl_rlvr": "rlvr", "sft": "sft"}  # eval label → stage whose final it is


# --- console -------------------------------------------------------------------------------------------
def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def say(message: str) -> None:
    if _is_rank_zero():  # one copy of each line, not one per process
        _console().print(message, markup=False)


def rule(title: str) -> None:
    if _is_rank_zero():
        _console().rule(f"[bold cyan]{title}")


class Ranks:
    """Who may write OUT: the main process of a distributed launch (or the only process)."""

    def __init__(self, distributed: bool | None = None):
        if distributed is None:
            distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.state = None
        if distributed:
            from accelerate import PartialState  # the same process group the trainers will use

            self.state = PartialState()

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


SINGLE = Ranks(distributed=False)  # for work only the main process does (eval): no barriers


# --- hashing and bookkeeping -----------------------------------------------------------------------------
def config_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)  # a kill never leaves a half-written _DONE.json


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def describe_change(old: Any, new: Any, limit: int = 4) -> str:
    """'rlvr.max_steps: 2 -> 3' for the keys that differ between two hashed payloads."""
    a, b = _flatten(old or {}), _flatten(new)
    changed = [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not changed:
        return "config changed"
    more = f" (+{len(changed) - limit} more)" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def complete_checkpoints(out: Path) -> list[Path]:
    """checkpoint-N folders that were fully written (HF Trainer saves trainer_state.json last)."""
    found = []
    for path in out.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit() and read_json(path / "trainer_state.json") is not None:
            found.append(path)
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[-1]))


def _remove_incomplete_checkpoints(out: Path) -> None:
    complete = set(complete_checkpoints(out))
    for path in out.glob("checkpoint-*"):
        if path.is_dir() and path not in complete:
            say(f"  removing incomplete {path.name} (killed while saving)")
            shutil.rmtree(path)


# What a stage folder may hold; anything else means --out points somewhere we must not wipe.
STAGE_FOLDER_ITEMS = {FINAL, "log_history.json", "README.md", "runs", "mlruns", DONE, STARTED, "metrics.json",
                      "predictions.jsonl", "eval_run.json"}


def _owned(out: Path) -> bool:
    if (out / STARTED).exists() or (out / DONE).exists():
        return True
    return all(p.name in STAGE_FOLDER_ITEMS or p.name.startswith(("checkpoint-", ".")) for p in out.iterdir())


def _clean(out: Path) -> None:
    if out.exists():
        if not _owned(out):
            raise UserInputError(f"{out} is not empty and does not look like an srl-rlvr stage folder; "
                                 "refusing to clean it (choose a new or empty --out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class StepOutcome:
    name: str
    skipped: bool
    seconds: float
    global_step: int | None = None
    resumed_from: str | None = None
    config_hash: str = ""


def run_step(name: str, out: Path, payload: dict[str, Any], work: Callable[[bool], int | None], *,
             resume: bool = False, artifact: str = FINAL, resumable: bool = True, ranks: Ranks = SINGLE) -> StepOutcome:
    """Run ``work(resuming) -> global_step`` in ``out`` unless a finished run with the same config is there.

    ``artifact`` must exist in ``out`` for a finished run to count (a deleted final re-runs the stage).
    With several ``ranks`` every rank runs ``work``; the main one alone cleans and writes the bookkeeping.
    """
    digest = config_hash(payload)
    done = read_json(out / DONE)  # every rank reads the same files, so every rank decides the same
    if done is not None and done.get("config_hash") == digest and (out / artifact).exists():
        say(f"skip {name}: done ({done.get('finished_at', '?')})")
        return StepOutcome(name, True, float(done.get("seconds", 0.0)), done.get("global_step"), None, digest)
    if ranks.is_main:
        if done is not None:
            why = describe_change(done.get("config"), payload) if done.get("config_hash") != digest else f"{out / artifact} is missing"
            say(f"rerun {name}: {why}")
            _clean(out)
        resuming = _prepare_folder(name, out, payload, resume and resumable)
        write_json(out / STARTED, {"config_hash": digest, "config": payload, "started_at": _now(), "resume_from": resuming})
    ranks.barrier()
    if not ranks.is_main:
        resuming = (read_json(out / STARTED) or {}).get("resume_from")
    started = time.perf_counter()
    global_step = work(resuming is not None)
    seconds = time.perf_counter() - started
    if ranks.is_main:
        write_json(out / DONE, {"stage": name, "finished_at": _now(), "global_step": global_step, "config_hash": digest,
                                "seconds": round(seconds, 2), "resumed_from": resuming, "config": payload})
        (out / STARTED).unlink(missing_ok=True)
    ranks.barrier()  # the next stage's hash reads this _DONE.json on every rank
    return StepOutcome(name, False, seconds, global_step, resuming, digest)


def _prepare_folder(name: str, out: Path, payload: dict[str, Any], resume: bool) -> str | None:
    """Make ``out`` ready for a fresh or resumed run; return the checkpoint name resumed from, if any."""
    digest = config_hash(payload)
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return None
    checkpoints = complete_checkpoints(out)
    started = read_json(out / STARTED) or {}
    if resume and checkpoints and started.get("config_hash") == digest:
        _remove_incomplete_checkpoints(out)
        if (out / FINAL).exists():  # a final without _DONE.json was cut short while saving
            shutil.rmtree(out / FINAL)
        say(f"resume {name} from {checkpoints[-1].name}")
        return checkpoints[-1].name
    if resume and checkpoints:
        say(f"{name}: config changed since the interrupted run ({describe_change(started.get('config'), payload)}); "
            f"starting over in {out}")
    elif resume:
        say(f"{name}: no complete checkpoint to resume from; starting over in {out}")
    else:
        hint = f" (pass --resume to continue from {checkpoints[-1].name})" if checkpoints else ""
        say(f"{name}: unfinished run found; starting over, cleaning {out}{hint}")
    _clean(out)
    return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --- tracking ------------------------------------------------------------------------------------------
_warned_no_mlflow: list[bool] = []  # say it once per process, not once per stage
def tracking_args(config: PipelineConfig, out_dir: Path, run_name: str) -> dict[str, Any]:
    """Stage-config overrides that turn on MLflow (local file store under OUT by default), or nothing."""
    import importlib.util

    if not config.tracking.mlflow:
        return {}
    if importlib.util.find_spec("mlflow") is None:
        if not _warned_no_mlflow:
            say("tracking off: mlflow is not installed (pip install mlflow, or set tracking.mlflow: false)")
            _warned_no_mlflow.append(True)
        return {}
    uri = config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"file:{(out_dir / 'mlruns').resolve()}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if uri.startswith("file:"):
        # MLflow 3 refuses the file store (maintenance mode) unless asked; it is still the no-server option.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ["MLFLOW_EXPERIMENT_NAME"] = config.tracking.experiment
    return {"report_to": ["mlflow"], "run_name": run_name}


# --- data ----------------------------------------------------------------------------------------------
@dataclass
class DataFiles:
    train: Path
    test: Path | None
    srl_train: Path
    digests: dict[str, str] = field(default_factory=dict)
    eval_sets: dict[str, Path] = field(default_factory=dict)  # test / dev / transfer: the ones written

    def eval_set(self, name: str) -> Path:
        if name not in self.eval_sets:
            raise UserInputError(f"eval.sets names '{name}', but there is no {name} split "
                                 f"(set data.{name}, or use data.demo, which writes dev, test and transfer)")
        return self.eval_sets[name]


def prepare_data(config: PipelineConfig, out_dir: Path, need_test: bool, ranks: Ranks = SINGLE) -> DataFiles:
    """Write OUT/data (main process): the trajectories, normalised to the trajectory format, and the SRL instances."""
    if ranks.is_main:
        _write_data(config, out_dir, need_test)
    ranks.barrier()
    return data_files(out_dir)


def data_files(out_dir: Path) -> DataFiles:
    data_dir = out_dir / "data"
    sets = {name: data_dir / f"{name}.jsonl" for name in EVAL_SETS if (data_dir / f"{name}.jsonl").is_file()}
    files = DataFiles(data_dir / "train.jsonl", sets.get("test"), data_dir / "srl_train.jsonl", eval_sets=sets)
    files.digests = {p.name: file_digest(p) for p in (files.train, files.srl_train, *sets.values())}
    return files


def _write_data(config: PipelineConfig, out_dir: Path, need_test: bool) -> None:
    from srl_rlvr.data.demo import write_demo_task
    from srl_rlvr.data.srl import build_instances, write_jsonl

    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = config.data
    if spec.train is None or (need_test and spec.test is None):
        if spec.demo is None:
            missing = "data.train" if spec.train is None else "data.test (the eval stage needs it)"
            raise UserInputError(f"{config.source or 'config'}: {missing} is not set, and there is no data.demo to generate")
        demo = spec.demo
        write_demo_task(data_dir, n_train=demo.n_train, n_test=demo.n_test, seed=demo.seed, style=demo.style,
                        min_ops=demo.min_ops, max_ops=demo.max_ops, numbers=demo.numbers, n_dev=demo.n_dev,
                        n_transfer=demo.n_transfer, answer_step=demo.answer_step)
        say(f"data: demo task, {demo.n_train} train / {demo.n_dev} dev / {demo.n_test} test / {demo.n_transfer} "
            f"transfer problems (seed {demo.seed}, {demo.style} steps, {demo.min_ops}-{demo.max_ops} operations, "
            f"{demo.numbers} numbers{', answer as its own step' if demo.answer_step else ''})")
    train_rows = _normalise(spec.train, spec.format, data_dir / "train.jsonl") if spec.train else _read(data_dir / "train.jsonl")
    for name in EVAL_SETS:
        if getattr(spec, name):
            _normalise(getattr(spec, name), spec.format, data_dir / f"{name}.jsonl")
    result = build_instances(train_rows)
    if not result.instances:
        raise UserInputError(f"{spec.train or 'demo data'}: no SRL instances could be built from the training trajectories")
    tmp = data_dir / "srl_train.jsonl.tmp"
    write_jsonl(tmp, result.instances)
    tmp.replace(data_dir / "srl_train.jsonl")
    say(f"data: {len(train_rows)} train trajectories → {len(result.instances)} SRL instances"
        + (f" ({len(result.skipped)} trajectories skipped)" if result.skipped else ""))


def _read(path: Path) -> list:
    from srl_rlvr.data.loaders.registry import load_source

    return load_source(str(path)).rows


def _normalise(source: str, fmt: str, target: Path) -> list:
    """Load any supported format, write it back as trajectory JSONL (what every later stage reads)."""
    from srl_rlvr.data.loaders.registry import load_source
    from srl_rlvr.data.srl import write_jsonl

    rows = load_source(source, fmt=fmt).rows
    tmp = target.with_name(target.name + ".tmp")
    write_jsonl(tmp, (t.model_dump(exclude_none=True) for t in rows))
    tmp.replace(target)
    return rows


# --- stages --------------------------------------------------------------------------------------------
def _stage_done_hash(out_dir: Path, stage: str) -> str | None:
    done = read_json(out_dir / stage / DONE)
    return done.get("config_hash") if done else None


def rlvr_source_stage(config: PipelineConfig) -> str:
    """RLVR starts from the last SRL/SFT stage listed before it (SRL when none is)."""
    before = config.stages[: config.stages.index("rlvr")] if "rlvr" in config.stages else []
    sources = [s for s in before if s in ("srl", "sft")]
    return sources[-1] if sources else "srl"


def _run_srl(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks) -> StepOutcome:
    out = out_dir / "srl"
    payload = {"model": config.model, "srl": config.srl, "lora": config.lora, "data": data.digests["srl_train.jsonl"]}

    def work(resuming: bool) -> int:
        args = config.srl_args(out, **tracking_args(config, out_dir, "srl"))
        return train_srl(config.model, data.srl_train, args, lora=config.lora, resume=resuming).global_step

    return run_step("srl", out, payload, work, resume=resume, ranks=ranks)


def _run_rlvr(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks) -> StepOutcome:
    source = rlvr_source_stage(config)
    init_from = out_dir / source / FINAL
    out = out_dir / "rlvr"
    payload = {"rlvr": config.rlvr, "init_from": source, "upstream": _stage_done_hash(out_dir, source),
               "data": data.digests["train.jsonl"]}
    if not (init_from / MANIFEST).is_file() and not _same(out, payload):
        # Loud, before anything is touched: RLVR must never quietly train the base model instead.
        raise UserInputError(f"rlvr starts from {init_from}, which is missing or unfinished; "
                             f"run the {source} stage first (srl-rlvr run CONFIG --only {source})")

    def work(resuming: bool) -> int:
        args = config.rlvr_args(out, **tracking_args(config, out_dir, "rlvr"))
        return train_rlvr(init_from, data.train, args, resume=resuming).global_step

    return run_step("rlvr", out, payload, work, resume=resume, ranks=ranks)


def _same(out: Path, payload: dict[str, Any]) -> bool:
    done = read_json(out / DONE) or {}
    return done.get("config_hash") == config_hash(payload) and (out / FINAL).exists()


def _run_sft(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks) -> StepOutcome:
    try:
        from srl_rlvr.training.sft import train_sft
    except ImportError:
        raise UserInputError("the sft stage is not available in this build (srl_rlvr.training.sft is missing)") from None
    out = out_dir / "sft"
    payload = {"model": config.model, "sft": config.sft, "lora": config.lora, "data": data.digests["train.jsonl"]}

    def work(resuming: bool) -> int | None:
        args = config.sft_args(out, **tracking_args(config, out_dir, "sft"))
        final = train_sft(config.model, data.train, out, args, lora=config.lora)
        return (read_json(Path(final) / MANIFEST) or {}).get("global_step")

    return run_step("sft", out, payload, work, resume=False, resumable=False, ranks=ranks)


def eval_model_path(config: PipelineConfig, out_dir: Path, label: str) -> str:
    if label == "base":
        from srl_rlvr.models import resolve_model

        return resolve_model(config.model)
    final = out_dir / MODEL_LABEL_STAGE[label] / FINAL
    if not (final / MANIFEST).is_file():
        stage = MODEL_LABEL_STAGE[label]
        raise UserInputError(f"eval model '{label}' is {final}, which is missing; run the {stage} stage first")
    return str(final)


def _run_eval(config: PipelineConfig, out_dir: Path, data: DataFiles, ranks: Ranks) -> StepOutcome:
    """Evaluate each model on each eval set (OUT/eval/<set>/<label>), in the main process only."""
    from srl_rlvr.eval import harness

    if not ranks.is_main:
        return StepOutcome("eval", True, 0.0)
    paths = {name: data.eval_set(name) for name in config.eval.sets}  # a set without data: an error before any eval
    eval_config = config.eval.eval_config()
    seconds, ran = 0.0, False
    for set_name, path in paths.items():
        for label in config.eval.models:
            model = eval_model_path(config, out_dir, label)
            identity = config.model if label == "base" else _stage_done_hash(out_dir, MODEL_LABEL_STAGE[label])
            payload = {"eval": config.eval.settings, "model": identity, "data": data.digests[path.name]}
            target = eval_dir(out_dir, set_name, label)

            def work(_resuming: bool, model: str = model, target: Path = target, label: str = label,
                     path: Path = path, set_name: str = set_name) -> None:
                say(f"eval {label} on {set_name}: {model}")
                result = harness.evaluate(model, _read(path), eval_config)
                harness.write_eval_outputs(result, target)
                m = result.metrics
                say(f"eval {label} on {set_name}: greedy accuracy {m.get('greedy_accuracy', float('nan')):.3f} "
                    f"on n={m.get('n')}")

            outcome = run_step(f"eval {label} on {set_name}", target, payload, work, artifact="metrics.json",
                               resumable=False)
            ran = ran or not outcome.skipped
            seconds += outcome.seconds  # a skipped model counts the time its recorded run took
    return StepOutcome("eval", not ran, seconds)


def eval_dir(out_dir: Path, set_name: str, label: str) -> Path:
    return out_dir / "eval" / set_name / label


# --- models ----------------------------------------------------------------------------------------------
def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # a finished final is never written again, so sharing its inodes is safe
    except OSError:
        shutil.copy2(src, dst)


def publish_models(out_dir: Path) -> dict[str, str]:
    """Copy each finished final to OUT/models/<label> (loadable with ``srl-rlvr eval --model``)."""
    published = {}
    for label, stage in MODEL_LABEL_STAGE.items():
        final = out_dir / stage / FINAL
        if not (final / MANIFEST).is_file():
            continue
        target = out_dir / "models" / label
        tmp = target.with_name(f".{label}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(final, tmp, copy_function=link_or_copy)
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
        published[label] = str(target)
    return published


# --- the pipeline ----------------------------------------------------------------------------------------
STAGE_RUNNERS = {"srl": _run_srl, "rlvr": _run_rlvr, "sft": _run_sft}


def _selected(config: PipelineConfig, only: list[str] | None) -> list[str]:
    if not only:
        return list(config.stages)
    unknown = [s for s in only if s not in config.stages]
    if unknown:
        raise UserInputError(f"--only {','.join(unknown)}: not in this config's stages {config.stages}")
    return [s for s in config.stages if s in only]


def run_pipeline(config: PipelineConfig, out_dir: str | Path, resume: bool = False, only: list[str] | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Run the configured stages into ``out_dir``; write and return the report (``OUT/report.json``).

    In a distributed launch only the main process returns the report; the others return ``{}``.
    """
    from srl_rlvr import report

    out = Path(out_dir)
    stages = _selected(config, only)
    ranks = Ranks()
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    command = command or (f"srl-rlvr run {config.source} --out {out}" if config.source else f"run_pipeline(out_dir={out})")
    timings: dict[str, float] = {}

    rule("data")
    started = time.perf_counter()
    data = prepare_data(config, out, need_test="eval" in config.stages, ranks=ranks)
    timings["data"] = round(time.perf_counter() - started, 2)

    for stage in stages:
        rule(stage)
        if stage == "eval":
            outcome = _run_eval(config, out, data, ranks)
        else:
            outcome = STAGE_RUNNERS[stage](config, out, data, resume, ranks)
        timings[stage] = round(outcome.seconds, 2)
        if not outcome.skipped:
            step = f", global step {outcome.global_step}" if outcome.global_step is not None else ""
            say(f"{stage} finished in {outcome.seconds:.1f}s{step}")

    if not ranks.is_main:
        return {}  # the report is the main process's job
    rule("report")
    models = publish_models(out)
    result = report.write_report(out, config, timings=timings, command=command, models=models)
    say(f"report: {out / 'report.md'}")
    for label, path in models.items():
        say(f"model {label}: {path}")
    return result
