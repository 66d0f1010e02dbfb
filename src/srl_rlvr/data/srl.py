"""SRL step instances from expert trajectories (the construction of arXiv 2510.25992, Sec. 3).

Construction, exactly:
  * A trajectory's expert path is turned into an ordered list of N actions:
      - ``steps``: the list as given;
      - ``solution``: ``split_steps(solution)`` (numbered list, then headings, then paragraphs);
      - ``messages``: one action per assistant message (``agent_turns``), earlier actions and
        observations kept as chat context.
  * Every action k = 1..N becomes one target. Its prompt is the problem plus the expert's actions
    1..k-1 (and, for agents, the observations between them). So a trajectory of N actions gives
    exactly N instances; one with fewer than ``min_steps`` or more than ``max_steps`` actions gives 0
    and is reported as skipped with the reason.
  * The prompt is built only from actions before k, so it never holds the target step or its title.

The model is asked for ``<think>monologue</think>`` and then only the next step; the SRL reward
scores that step against ``expert_step``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.data.loaders.agent import agent_turns, transcript_system_prompt
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.steps import split_steps
from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import SRL_SYSTEM_PROMPT, render_step_prompt


@dataclass
class SRLBuildConfig:
    """How trajectories become SRL instances."""

    min_steps: int = 1
    max_steps: int | None = None
    system_prompt: str = SRL_SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.min_steps < 1:
            raise UserInputError(f"min_steps must be >= 1, got {self.min_steps}")
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise UserInputError(f"max_steps ({self.max_steps}) is below min_steps ({self.min_steps})")


@dataclass(frozen=True)
class Action:
    """One expert action and the chat messages that came between the problem and it."""

    text: str
    context: tuple[dict[str, Any], ...] = ()


@dataclass
class BuildResult:
    instances: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (trajectory id, reason)
    trajectories: int = 0


def trajectory_actions(traj: Trajectory) -> list[Action]:
    """The ordered expert actions of one trajectory."""
    if traj.steps is not None:
        return [Action(s.strip()) for s in traj.steps]
    if traj.solution is not None:
        return [Action(s) for s in split_steps(traj.solution)]
    return [Action(t.action, tuple(t.context)) for t in agent_turns(traj.messages or [])]


def _instance(traj: Trajectory, k: int, n: int, prompt: list[dict[str, Any]], target: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"{traj.id}#step{k}",
        "trajectory_id": traj.id,
        "step_index": k,
        "num_steps": n,
        "prompt": prompt,
        "expert_step": target,
        "domain": traj.domain,
    }
    if traj.answer is not None:
        row["answer"] = traj.answer
    return row


def instances_for(traj: Trajectory, actions: list[Action], config: SRLBuildConfig) -> list[dict[str, Any]]:
    """All SRL instances of one trajectory, one per action."""
    n = len(actions)
    system = config.system_prompt
    if traj.messages is not None and (extra := transcript_system_prompt(traj.messages)):
        system = f"{system}\n\n{extra}"
    out = []
    for k, action in enumerate(actions, 1):
        if action.context or traj.messages is not None:
            # agentic: observations sit between actions, so keep them as chat turns
            prompt = [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Task:\n{traj.problem}"},
                *action.context,
            ]
        else:
            previous = [a.text for a in actions[: k - 1]]
            prompt = [
                {"role": "system", "content": system},
                {"role": "user", "content": render_step_prompt(traj.problem, previous, k)},
            ]
        out.append(_instance(traj, k, n, prompt, action.text))
    return out


def build_instances(trajectories: Iterable[Trajectory], config: SRLBuildConfig | None = None) -> BuildResult:
    """Turn trajectories into SRL instances, skipping (with a reason) those whose step count is out of range."""
    config = config or SRLBuildConfig()
    result = BuildResult()
    for traj in trajectories:
        result.trajectories += 1
        actions = trajectory_actions(traj)
        n = len(actions)
        if n < config.min_steps:
            result.skipped.append((traj.id, f"{n} step(s), fewer than min_steps={config.min_steps}"))
            continue
        if config.max_steps is not None and n > config.max_steps:
            result.skipped.append((traj.id, f"{n} steps, more than max_steps={config.max_steps}"))
            continue
        result.instances.extend(instances_for(traj, actions, config))
    return result


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSONL (UTF-8, one object per line); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
