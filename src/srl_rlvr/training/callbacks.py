"""Training metrics TRL does not log by itself: the SRL format rate and completion tokens per second.

* ``srl_format_ok`` is a TRL reward function added with weight 0: TRL logs its mean as
  ``rewards/srl_format_ok/mean`` (the share of rollouts that are well-formed ``<think>…</think>action``),
  while the optimised reward stays what it was. TRL sums ``rewards_per_func * reward_weights`` (``nansum``)
  before computing advantages, and dynamic sampling's group filter uses the same weighted sum, so a
  0-weight column contributes exactly 0 to both (tests/training/test_callbacks.py checks this end to end).
  Caveat: because it always returns a number, a row whose real reward is None is no longer "unscorable"
  for TRL (its advantage is computed from a 0 reward instead of being forced to 0); the SRL rewards
  never return None.
* ``ThroughputCallback`` adds ``tokens_per_s`` (completion tokens generated per second of step time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from transformers import TrainerCallback

from srl_rlvr.core.memory import release_free_memory
from srl_rlvr.rewards.srl import parse_think_action
from srl_rlvr.rewards.trl_batch import completion_text

RewardFunc = Callable[..., list[float]]


def srl_format_ok(completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 for a completion that is well-formed under the strict SRL rule, else 0.0.

    >>> srl_format_ok(["<think>add</think>x = 5", "x = 5", [{"role": "assistant", "content": "<think></think>y"}]])
    [1.0, 0.0, 1.0]
    """
    return [0.0 if parse_think_action(completion_text(c)) is None else 1.0 for c in completions]


def with_format_ok_metric(reward_funcs: Sequence[RewardFunc], reward_weights: Sequence[float] | None = None
                          ) -> tuple[list[RewardFunc], list[float]]:
    """``reward_funcs`` plus ``srl_format_ok`` at weight 0, and the matching ``reward_weights``.

    Pass both to TRL: ``SRLTrainer(reward_funcs=funcs, args=SRLConfig(reward_weights=weights, ...))``.

    >>> funcs, weights = with_format_ok_metric([len])
    >>> [f.__name__ for f in funcs], weights
    (['len', 'srl_format_ok'], [1.0, 0.0])
    """
    weights = [1.0] * len(reward_funcs) if reward_weights is None else [float(w) for w in reward_weights]
    if len(weights) != len(reward_funcs):
        raise ValueError(f"{len(weights)} reward weights for {len(reward_funcs)} reward functions")
    return [*reward_funcs, srl_format_ok], [*weights, 0.0]


def generated_rows_per_step(args: Any, logs: dict[str, float]) -> float:
    """Completions generated per optimiser step, over all processes.

    Each optimiser step trains on per-device batch x accumulation steps x processes completions; a
    generation batch is reused ``num_iterations`` times; dynamic sampling generates ``generated_per_kept``
    completions for each one kept.
    """
    trained = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    reuse = max(1, int(getattr(args, "num_iterations", 1) or 1))
    return trained / reuse * float(logs.get("dynamic_sampling/generated_per_kept", 1.0))


def tokens_per_second(args: Any, logs: dict[str, float]) -> float | None:
    """Completion tokens per second from TRL's logged ``completions/mean_length`` and ``step_time``."""
    mean_length, step_time = logs.get("completions/mean_length"), logs.get("step_time")
    if mean_length is None or not step_time:
        return None
    return float(mean_length) * generated_rows_per_step(args, logs) / float(step_time)


class ThroughputCallback(TrainerCallback):
    """Adds ``tokens_per_s`` to every training log that has TRL's ``completions/mean_length`` and ``step_time``.

    Trainer.log appends to ``state.log_history`` before callbacks run and calls callbacks in order, so this
    also writes the figure into the history entry, and :func:`add_throughput_callback` puts it first so
    reporters (MLflow, ...) see it. Given through ``callbacks=[...]`` it runs after the reporters.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        rate = tokens_per_second(args, logs)
        if rate is None:
            return
        logs["tokens_per_s"] = rate
        last = state.log_history[-1] if state.log_history else None
        if (last is not None and last.get("step_time") == logs.get("step_time")
                and last.get("step") == state.global_step):
            last["tokens_per_s"] = rate


class ReleaseMemoryCallback(TrainerCallback):
    """After every optimiser step, hand the step's freed heap memory back to the OS (core/memory.py)."""

    def on_step_end(self, args, state, control, **kwargs):
        release_free_memory()


def add_throughput_callback(trainer: Any) -> ThroughputCallback:
    """Install a ThroughputCallback ahead of every other callback (reporters included); returns it."""
    callback = ThroughputCallback()
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback
