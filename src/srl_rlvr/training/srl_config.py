"""Configuration of the SRL stage: TRL's GRPOConfig plus the SRL-specific knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


@dataclass
class DynamicSamplingArgs:
    """Fields shared by the SRL and RLVR configs (mixed into both)."""

    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop prompt groups whose population reward std is <= dynamic_sampling_epsilon and "
                          "generate more prompts until the batch is full (or max_refill_rounds is spent)."},
    )
    dynamic_sampling_epsilon: float = field(default=1e-4,
                                            metadata={"help": "Groups with reward std <= this are dropped."})
    max_refill_rounds: int = field(
        default=3, metadata={"help": "Cap on generation rounds per optimiser batch, the first included."}
    )
    shared_prefix_generation: bool = field(
        default=True,
        metadata={"help": "On the plain transformers path, prefill each prompt once per group and sample its "
                          "rollouts from a shared KV cache, under the configured autocast (bf16/fp16)."},
    )

    shared_prefix_training: bool = field(
        default=True,
        metadata={"help": "Run each group's shared prompt through the model once when computing log-probs "
                          "(single process, text-only); exact, and far cheaper for long prompts and short steps."},
    )

    think_prefill: bool | str | None = field(
        default=None,
        metadata={"help": "End the generation prompt with '<think>' (R1-style) and score '<think>' + completion; "
                          "'empty' prefills '<think></think>', so the model writes only the step. "
                          "SRL: None means off. RLVR: None inherits the setting the SRL checkpoint was trained with."},
    )

    def _check_dynamic_sampling(self) -> None:
        if self.dynamic_sampling_epsilon < 0:
            raise ValueError(f"dynamic_sampling_epsilon must be >= 0, got {self.dynamic_sampling_epsilon}")
        if self.max_refill_rounds < 1:
            raise ValueError(f"max_refill_rounds must be >= 1, got {self.max_refill_rounds}")
        if self.think_prefill is not None:
            from srl_rlvr.prompts import normalise_prefill

            self.think_prefill = normalise_prefill(self.think_prefill)


@dataclass
class SRLConfig(DynamicSamplingArgs, GRPOConfig):
    """GRPOConfig for SRL. Paper defaults: KL 0 (``beta=0``), temperature 1.0, 8 rollouts per prompt.

    ``reward_mode`` picks the SRL reward: ``strict`` (the paper's −1 for a broken format) or ``lenient``
    (malformed completions graded below the strict range; needed by very small models, see docs/rewards.md).
    """

    reward_mode: str = field(default="strict", metadata={"help": "SRL reward format mode: 'strict' or 'lenient'."})
    guide_rollouts: int = field(
        default=0,
        metadata={"help": "Replace the last N rollouts of every group with the expert step (off-policy guidance, "
                          "training/guidance.py); 0 is the paper's on-policy SRL. Must be below num_generations."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_mode not in ("strict", "lenient"):
            raise ValueError(f"reward_mode must be 'strict' or 'lenient', got {self.reward_mode!r}")
        if not 0 <= self.guide_rollouts < self.num_generations:
            raise ValueError(f"guide_rollouts must be in 0..num_generations-1 ({self.num_generations - 1}), "
                             f"got {self.guide_rollouts}: a group needs at least one sampled rollout")
        self._check_dynamic_sampling()
