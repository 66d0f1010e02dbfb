"""``srl-rlvr loop``: escalations -> distill -> SRL/RLVR from the champion -> eval -> gate -> hot-swap -> router
refit (``run.py``)."""

from srl_rlvr.pipelines.loop.config import LoopConfig, load_loop_config
from srl_rlvr.pipelines.loop.run import LoopStopped, run_loop

__all__ = ["LoopConfig", "LoopStopped", "load_loop_config", "run_loop"]
