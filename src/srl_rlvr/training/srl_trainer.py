"""SRLTrainer: TRL's GRPOTrainer with the SRL step reward, dynamic sampling with refill and faster rollouts.

    srl-rlvr train srl --model smollm2-135m --data data/demo/srl_train.jsonl --out runs/srl
"""

from __future__ import annotations

from trl import GRPOTrainer

from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import with_prefill
from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.callbacks import with_format_ok_metric
from srl_rlvr.training.generation import FastGenerationMixin
from srl_rlvr.training.guidance import GuidedRolloutMixin, RoundInputsMixin
from srl_rlvr.training.prefix_sharing import SharedPrefixLogpsMixin
from srl_rlvr.training.resilience import ResilienceMixin
from srl_rlvr.training.sampling import DynamicSamplingMixin
from srl_rlvr.training.srl_config import SRLConfig


def prefilled(reward_func, think_prefill: bool | str = True):
    """Score prefill + completion when the prompt ended with the prefill (``<think>`` or ``<think></think>``)."""

    def wrapped(completions, **kwargs):
        return reward_func([with_prefill(c, think_prefill) if isinstance(c, str) else c for c in completions],
                           **kwargs)

    wrapped.__name__ = getattr(reward_func, "__name__", "reward")
    return wrapped


def with_prompt_format(reward_funcs: list, think_prefill: bool | str | None) -> list:
    return [prefilled(f, think_prefill) for f in reward_funcs] if think_prefill else list(reward_funcs)


def require_columns(dataset, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserInputError(f"{what} needs the column(s) {missing}; the dataset has {dataset.column_names}")


class SRLTrainer(ResilienceMixin, GuidedRolloutMixin, FastGenerationMixin, SharedPrefixLogpsMixin,
                 DynamicSamplingMixin, RoundInputsMixin, GRPOTrainer):
    """GRPO on SRL step instances (``prompt`` chat messages + ``expert_step``)."""

    def __init__(self, model, args: SRLConfig, train_dataset, processing_class=None, peft_config=None,
                 callbacks=None, reward_funcs=None):
        require_columns(train_dataset, ("prompt", "expert_step"), "SRL training data")
        if reward_funcs is None:
            reward_funcs = [get_reward_func("srl_lenient" if args.reward_mode == "lenient" else "srl_strict")]
            if args.reward_weights is None:  # log the format-OK rate as a weight-0 "reward" (optimises nothing)
                reward_funcs, args.reward_weights = with_format_ok_metric(reward_funcs)
        reward_funcs = with_prompt_format(reward_funcs, args.think_prefill)
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         processing_class=processing_class, peft_config=peft_config, callbacks=callbacks)
        self._check_guidance()
