"""Name-keyed trajectory loaders, so ``--format NAME`` and configs pick one without if-chains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from srl_rlvr.core.names import NameTable
from srl_rlvr.data.loaders.jsonl import LoadResult, iter_json_objects
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import InvalidRecord, UserInputError

Loader = Callable[[str, bool], LoadResult[Trajectory]]

CHAMP_SOURCE = "champ"  # ``--input champ`` reads the problems shipped in the champ-dataset package


def _trajectory(path: str, skip_invalid: bool) -> LoadResult[Trajectory]:
    from srl_rlvr.data.loaders.trajectories import load_trajectories

    return load_trajectories(path, skip_invalid=skip_invalid)


def _s1k(path: str, skip_invalid: bool) -> LoadResult[Trajectory]:
    from srl_rlvr.data.loaders.s1k import load_s1k

    return load_s1k(path, skip_invalid=skip_invalid)


def _agent(path: str, skip_invalid: bool) -> LoadResult[Trajectory]:
    from srl_rlvr.data.loaders.agent import load_agent_transcripts

    return load_agent_transcripts(path, skip_invalid=skip_invalid)


def _champ(path: str, skip_invalid: bool) -> LoadResult[Trajectory]:
    from srl_rlvr.data.loaders.champ import load_champ

    if path != CHAMP_SOURCE:
        raise UserInputError(f"format 'champ' reads the champ-dataset package: "
                             f"pass --input {CHAMP_SOURCE}, not {path!r}")
    return LoadResult(rows=load_champ())


def _benchmark(name: str) -> Loader:
    def load(path: str, skip_invalid: bool) -> LoadResult[Trajectory]:
        from srl_rlvr.data.loaders.benchmarks import load_benchmark

        return load_benchmark(name, path, skip_invalid=skip_invalid)

    return load


LOADERS: NameTable[Loader] = NameTable("format")
for _name, _loader in {"trajectory": _trajectory, "s1k": _s1k, "agent": _agent, "champ": _champ,
                       **{name: _benchmark(name) for name in ("amc23", "aime24", "aime25")}}.items():
    LOADERS.add(_name, _loader)


def detect_format(path: str) -> str:
    """Guess the format from the first decodable row: benchmark rows have exactly their dataset's columns,
    s1K rows have ``question``, raw transcripts only ``messages``."""
    if path == CHAMP_SOURCE:
        return "champ"
    if not Path(path).is_file():
        raise UserInputError(f"{path}: no such file")
    from srl_rlvr.data.loaders.benchmarks import detect_benchmark

    for _, obj in iter_json_objects(path):
        if isinstance(obj, InvalidRecord) or not isinstance(obj, dict):
            continue
        if benchmark := detect_benchmark(obj):  # AMC23/AIME rows: exactly their dataset's columns
            return benchmark
        if "problem" not in obj and "question" in obj:
            return "s1k"
        if "problem" not in obj and "messages" in obj:
            return "agent"
        return "trajectory"
    return "trajectory"


def load_source(path: str, fmt: str = "auto", skip_invalid: bool = False) -> LoadResult[Trajectory]:
    """Load trajectories from ``path`` in format ``fmt`` (``auto`` detects it)."""
    if fmt == "auto":
        fmt = detect_format(path)
    return LOADERS.get(fmt)(path, skip_invalid)
