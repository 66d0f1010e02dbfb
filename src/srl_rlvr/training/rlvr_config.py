"""Configuration of the RLVR stage: GRPOConfig plus a verifiable reward and the DAPO all-equal filter."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from srl_rlvr.training.srl_config import DynamicSamplingArgs

RLVR_PROMPT_MODES = ("full", "final_step", "stepwise")


@dataclass
class RLVRConfig(DynamicSamplingArgs, GRPOConfig):
    """GRPOConfig for RLVR. ``reward`` names a registered reward (``math`` or ``code``).

    Dynamic sampling here is DAPO's filter: with the default ``dynamic_sampling_epsilon=0`` only groups
    whose rewards are all equal (all right or all wrong) are dropped and refilled.
    """

    reward: str = field(default="math", metadata={"help": "Registered reward name: 'math' or 'code'."})
    sandbox: str = field(default="strict", metadata={
        "help": "Code reward only: 'strict' refuses to run candidate code without every isolation layer "
                "(network namespace, another uid, rlimits, audit hook); 'weak' runs anyway and logs what is "
                "missing (docs/rewards.md)."})
    dynamic_sampling_epsilon: float = field(default=0.0,
                                            metadata={"help": "Groups with reward std <= this are dropped."})
    prompt_mode: str = field(
        default="full",
        metadata={"help": "'full': the whole problem, the model writes every step and the answer. 'final_step': "
                          "the SRL step prompt with the expert's steps 1..N-1 given, the model writes the last step "
                          "and its answer (a reverse-curriculum start state, as in R^3, arXiv 2402.05808). "
                          "'stepwise': each rollout is the model's own step-by-step trajectory, one call per step on "
                          "the SRL step prompt with its own earlier steps, as eval mode 'stepwise' runs it; the "
                          "answer's reward trains every call (training/trajectory.py)."},
    )
    stepwise_max_calls: int = field(default=3, metadata={
        "help": "prompt_mode 'stepwise' only: calls per trajectory at most (eval's max_steps); a trajectory also "
                "ends at the first step that states the answer."})
    stepwise_step_reward: float = field(default=0.0, metadata={
        "help": "prompt_mode 'stepwise' only: weight w of a dense step term added to the answer reward, "
                "w x the mean difflib 2M/T of the model's step k against the expert's step k over the longer of "
                "the two trajectories (a skipped or extra step scores 0). 0 keeps the answer reward alone."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_dynamic_sampling()
        if self.sandbox not in ("strict", "weak"):
            raise ValueError(f"sandbox must be 'strict' or 'weak', got {self.sandbox!r}")
        if self.prompt_mode not in RLVR_PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {', '.join(RLVR_PROMPT_MODES)}, got {self.prompt_mode!r}")
        if self.stepwise_max_calls < 1:
            raise ValueError(f"stepwise_max_calls must be at least 1, got {self.stepwise_max_calls}")
        if self.stepwise_step_reward < 0:
            raise ValueError(f"stepwise_step_reward must be >= 0, got {self.stepwise_step_reward}")
        if self.stepwise_step_reward and self.prompt_mode != "stepwise":
            raise ValueError("stepwise_step_reward applies only to prompt_mode 'stepwise', "
                             f"not {self.prompt_mode!r}")
