"""CHAMP (Mao et al., 2024): 270 competition math problems with human step-by-step solutions.

Read straight from the ``champ-dataset`` package's JSON file, so only its data layout is relied on, not its
classes: ``problems`` maps an identifier such as ``P_Combinatorics_1`` to ``_text`` (problem),
``solution.steps[]._text`` (steps with the ``@@`` math markup removed), ``_answer`` and ``category``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import UserInputError

CHAMP_PACKAGE = "champ_dataset"
CHAMP_FILE = ("dataset_files", "v0.json")


@lru_cache(maxsize=1)
def _champ_problems() -> dict[str, dict[str, Any]]:
    try:
        data_file = resources.files(CHAMP_PACKAGE).joinpath(*CHAMP_FILE)
        raw = data_file.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise UserInputError(
            "the CHAMP data set needs the champ-dataset package: pip install champ-dataset==1.0.0"
        ) from exc
    return json.loads(raw)["problems"]


def champ_sort_key(identifier: str) -> tuple[Any, ...]:
    """Natural order: P_Combinatorics_2 before P_Combinatorics_10.

    >>> sorted(["P_NT_10", "P_NT_2", "P_Algebra_1"], key=champ_sort_key)
    ['P_Algebra_1', 'P_NT_2', 'P_NT_10']
    """
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", identifier))


def load_champ(limit: int | None = None) -> list[Trajectory]:
    """CHAMP problems as Trajectories (``steps`` from the human solution), in natural id order.

    ``limit`` keeps the first ``limit`` problems of that order.
    """
    if limit is not None and limit < 0:
        raise UserInputError(f"limit must be zero or more, got {limit}")
    problems = _champ_problems()
    identifiers = sorted(problems, key=champ_sort_key)
    if limit is not None:
        identifiers = identifiers[:limit]
    trajectories = []
    for identifier in identifiers:
        problem = problems[identifier]
        trajectories.append(
            Trajectory(
                id=problem.get("identifier", identifier),
                problem=problem["_text"],
                steps=[step["_text"].strip() for step in problem["solution"]["steps"]],
                answer=problem["_answer"],
                domain="math",
                category=problem["category"],
            )
        )
    return trajectories
