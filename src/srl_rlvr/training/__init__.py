"""SRL and RLVR trainers on TRL's GRPOTrainer (config/trainer pairs, as TRL's own), the SFT baseline, and
the stage runners.

    >>> from srl_rlvr.training import SRLConfig, SRLTrainer
    >>> SRLConfig.__module__, SRLTrainer.__module__
    ('srl_rlvr.training.srl_config', 'srl_rlvr.training.srl_trainer')

The four names load on first access (PEP 562), so importing a light submodule such as
``srl_rlvr.training.generation`` does not pull in TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SRLConfig": "srl_rlvr.training.srl_config",
    "SRLTrainer": "srl_rlvr.training.srl_trainer",
    "RLVRConfig": "srl_rlvr.training.rlvr_config",
    "RLVRTrainer": "srl_rlvr.training.rlvr_trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'srl_rlvr.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
