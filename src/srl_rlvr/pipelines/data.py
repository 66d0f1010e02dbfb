"""OUT/data: the run's trajectories, normalised to the trajectory format, and its SRL instances.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --only srl      # writes out/demo/data/ first

``data.train`` (and ``data.test`` / ``data.dev`` / ``data.transfer``) are read in any supported format and
written back as trajectory JSONL, which every later stage reads; ``data.demo`` generates the seeded
arithmetic task instead. Each file's digest goes into the stage hashes, so changed data reruns what used it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from srl_rlvr.core.console import SINGLE, Ranks, say
from srl_rlvr.core.io import file_digest
from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.config import EVAL_SETS, PipelineConfig


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
            raise UserInputError(f"{config.source or 'config'}: {missing} is not set, "
                                 "and there is no data.demo to generate")
        demo = spec.demo
        write_demo_task(data_dir, n_train=demo.n_train, n_test=demo.n_test, seed=demo.seed, style=demo.style,
                        min_ops=demo.min_ops, max_ops=demo.max_ops, numbers=demo.numbers, n_dev=demo.n_dev,
                        n_transfer=demo.n_transfer, answer_step=demo.answer_step)
        say(f"data: demo task, {demo.n_train} train / {demo.n_dev} dev / {demo.n_test} test / {demo.n_transfer} "
            f"transfer problems (seed {demo.seed}, {demo.style} steps, {demo.min_ops}-{demo.max_ops} operations, "
            f"{demo.numbers} numbers{', answer as its own step' if demo.answer_step else ''})")
    train_rows = (_normalise(spec.train, spec.format, data_dir / "train.jsonl") if spec.train
                  else read_trajectories(data_dir / "train.jsonl"))
    for name in EVAL_SETS:
        if getattr(spec, name):
            _normalise(getattr(spec, name), spec.format, data_dir / f"{name}.jsonl")
    result = build_instances(train_rows)
    if not result.instances:
        raise UserInputError(f"{spec.train or 'demo data'}: "
                             "no SRL instances could be built from the training trajectories")
    tmp = data_dir / "srl_train.jsonl.tmp"
    write_jsonl(tmp, result.instances)
    tmp.replace(data_dir / "srl_train.jsonl")
    say(f"data: {len(train_rows)} train trajectories → {len(result.instances)} SRL instances"
        + (f" ({len(result.skipped)} trajectories skipped)" if result.skipped else ""))


def read_trajectories(path: Path) -> list:
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
