"""RLVRTrainer: GRPO on a verifiable reward (math-verify answers, code tests) with the DAPO filter.

It is meant to start from the SRL stage's weights; ``training.stages.train_rlvr`` enforces that handoff.

    srl-rlvr train rlvr --init-from runs/srl/final --data data/demo/train.jsonl --out runs/rlvr
"""

from __future__ import annotations

from trl import GRPOTrainer

from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.generation import FastGenerationMixin
from srl_rlvr.training.prefix_sharing import SharedPrefixLogpsMixin
from srl_rlvr.training.resilience import ResilienceMixin
from srl_rlvr.training.rlvr_config import RLVRConfig
from srl_rlvr.training.sampling import DynamicSamplingMixin
from srl_rlvr.training.srl_trainer import require_columns, with_prompt_format
from srl_rlvr.training.trajectory import StepwiseRolloutMixin

REWARD_COLUMNS = {"math": ("answer",), "code": ("tests",)}


class RLVRTrainer(ResilienceMixin, FastGenerationMixin, SharedPrefixLogpsMixin, StepwiseRolloutMixin,
                  DynamicSamplingMixin, GRPOTrainer):
    """GRPO with a checkable reward column (``answer`` or ``tests``) on full-problem or final-step prompts
    (``prompt``), or on the model's own stepwise trajectories (``problem``; training/trajectory.py)."""

    def __init__(self, model, args: RLVRConfig, train_dataset, processing_class=None, peft_config=None,
                 callbacks=None, reward_funcs=None):
        # the config already refuses a step reward outside stepwise mode
        stepwise = (("problem",) if args.prompt_mode == "stepwise" else ()) + \
            (("expert_steps",) if args.stepwise_step_reward else ())
        require_columns(train_dataset, ("prompt", *stepwise, *REWARD_COLUMNS.get(args.reward, ())),
                        "RLVR training data")
        if reward_funcs is None:
            reward_funcs = [get_reward_func(args.reward)]
            if args.reward == "code":
                reward_funcs = [_with_sandbox(reward_funcs[0], args.sandbox)]
        reward_funcs = with_prompt_format(reward_funcs, args.think_prefill)
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         processing_class=processing_class, peft_config=peft_config, callbacks=callbacks)
        self._check_stepwise()


def _with_sandbox(reward, mode: str):
    """The code reward with the stage's sandbox mode bound (TRL needs a function with a __name__)."""

    def bound(completions, **kwargs):
        return reward(completions, **{**kwargs, "sandbox": mode})

    bound.__name__ = reward.__name__
    return bound
