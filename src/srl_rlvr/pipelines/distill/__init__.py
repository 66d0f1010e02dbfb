"""``srl-rlvr distill``: verified step-by-step trajectories from an OpenAI-compatible teacher.

Modules: ``teacher`` (the async chat client, retries), ``cache`` (the append-only response cache that
makes a killed run resumable), ``verify`` (answer, tests, think block and steps of one sample),
``decontaminate`` (8-gram overlap with eval sets) and ``run`` (the orchestration, :func:`distill`).
"""

from srl_rlvr.pipelines.distill.run import distill

__all__ = ["distill"]
