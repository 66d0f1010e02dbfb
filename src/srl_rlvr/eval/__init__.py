"""Evaluation: generate on problems with answers and score with the RLVR math reward.

    srl-rlvr eval --model smollm2-135m --data data/demo/test.jsonl --out out/eval_base --k 4
"""

from __future__ import annotations

from srl_rlvr.eval.harness import EvalConfig, EvalResult, evaluate, rescore_predictions, write_eval_outputs

__all__ = ["EvalConfig", "EvalResult", "evaluate", "rescore_predictions", "write_eval_outputs"]
