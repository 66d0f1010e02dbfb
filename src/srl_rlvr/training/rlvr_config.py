"""Configuration of the RLVR stage: GRPOConfig plus a verifiable reward and the DAPO all-equal filter."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from srl_rlvr.training.srl_config import DynamicSamplingArgs


@dataclass
class RLVRConfig(DynamicSamplingArgs, GRPOConfig):
    """GRPOConfig for RLVR. ``reward`` names a registered reward (``math`` or ``code``).

    Dynamic sampling here is DAPO's filter: with the default ``dynamic_sampling_epsilon=0`` only groups
    whose rewards are all equal (all right or all wrong) are dropped and refilled.
    """

    reward: str = field(default="math", metadata={"help": "Registered reward name: 'math' or 'code'."})
    dynamic_sampling_epsilon: float = field(default=0.0, metadata={"help": "Groups with reward std <= this are dropped."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_dynamic_sampling()
