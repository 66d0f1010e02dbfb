"""Plain trajectory JSONL (the public contract in data/schema.py), with duplicate-id checks."""

from __future__ import annotations

from pathlib import Path

from srl_rlvr.data.loaders.jsonl import LoadResult, load_jsonl
from srl_rlvr.data.schema import Trajectory, validate_trajectory
from srl_rlvr.errors import InvalidRecord


def load_trajectories(path: str | Path, skip_invalid: bool = False) -> LoadResult[Trajectory]:
    """Load trajectory JSONL; a bad row raises InvalidRecord (``file:line`` + field) unless skipped."""
    first_seen: dict[str, int] = {}

    def validate(obj: object, where: str, line: int) -> Trajectory:
        traj = validate_trajectory(obj, where, line)
        if traj.id in first_seen:
            raise InvalidRecord(where, line, "id",
                                f"duplicate id {traj.id!r} (first seen at line {first_seen[traj.id]})")
        first_seen[traj.id] = line
        return traj

    return load_jsonl(path, validate, skip_invalid=skip_invalid)
