"""Expert-guided rollouts for SRL: the expert's step stands in for some of each group's sampled rollouts.

SRL's reward compares a sampled step with the expert's, so GRPO can only move the policy towards steps it
already samples. A 135M model under the SRL prompt samples the expert's exact step about 1 time in 100
(docs/results.md, X1-X3), the groups rarely contain the step that is right, and the policy settles within
10-20 updates on the template it happened to sample (the marginal operator, one step and an answer).

With ``guide_rollouts: g`` the last ``g`` rollouts of every group are replaced by the expert step itself
(after the configured prefill, with an empty monologue), which the reward scores like any other rollout
(2M/T = 1.0 when well formed). Each group then holds the right step beside the model's own tries; its
advantage pushes the expert step up and the worse samples down, and a group whose samples already equal
the expert's is flat and dropped as before. This is off-policy guidance as in LUFFY (Yan et al. 2025,
arXiv 2504.14945) without its importance-weight shaping: the expert rows are trained with ratio 1, as TRL
trains every row when ``num_iterations`` is 1. ``0`` (the default) is the paper's on-policy SRL.

Rows keep TRL's layout (the ``num_generations`` rollouts of a prompt are consecutive), so the guided
rows are the last ``g`` of every block of ``num_generations``; they are not generated at all.
"""

from __future__ import annotations

from typing import Any

from srl_rlvr.prompts import EMPTY_THINK_PREFILL, prefill_text


def guide_completion(expert_step: str, think_prefill: bool | str | None) -> str:
    """The completion text whose prefill + text is ``<think></think>expert_step``.

    >>> guide_completion("x = 5", "empty"), guide_completion("x = 5", True), guide_completion("x = 5", None)
    ('x = 5', '</think>x = 5', '<think></think>x = 5')
    """
    full = EMPTY_THINK_PREFILL + expert_step
    prefix = prefill_text(think_prefill)
    return full[len(prefix):]


def guided_rows(n_rows: int, num_generations: int, guides: int) -> list[int]:
    """Indices of the rows that carry the expert step: the last ``guides`` of each group.

    >>> guided_rows(8, 4, 1), guided_rows(8, 4, 2)
    ([3, 7], [2, 3, 6, 7])
    """
    return [i for i in range(n_rows) if i % num_generations >= num_generations - guides]


class RoundInputsMixin:
    """Keeps the rows of the generation round in progress as ``self._round_inputs``. Mix in right before
    GRPOTrainer, after DynamicSamplingMixin, so that every round (the first and each refill) passes here."""

    _round_inputs: list[dict[str, Any]] | None = None

    def _generate_and_score_completions(self, inputs):
        self._round_inputs = inputs if self.model.training else None
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._round_inputs = None


class GuidedRolloutMixin:
    """Mix into a GRPOTrainer subclass before the generation mixins (and RoundInputsMixin after dynamic
    sampling); reads ``args.guide_rollouts``."""

    guided_completions: int = 0  # rows replaced so far (tests, debugging)

    @property
    def _guides(self) -> int:
        return int(getattr(self.args, "guide_rollouts", 0) or 0)

    def _check_guidance(self) -> None:
        if self._guides and getattr(self.args, "use_vllm", False):
            raise ValueError("guide_rollouts needs the transformers generation path; vLLM's logprobs would "
                             "not describe the expert rows")

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        guides, rows = self._guides, getattr(self, "_round_inputs", None)
        if not guides or rows is None or images or multimodal_fields:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        if len(rows) != len(prompt_ids):  # a TRL change that splits generation differently: say so
            raise RuntimeError(f"guide_rollouts: {len(prompt_ids)} prompts for {len(rows)} rows")
        guided = set(guided_rows(len(prompt_ids), num_generations, guides))
        sampled = [i for i in range(len(prompt_ids)) if i not in guided]  # only these are generated
        own, logprobs = super()._generate_single_turn([prompt_ids[i] for i in sampled], images, multimodal_fields,
                                                      num_generations - guides, has_tool_images)
        if logprobs is not None:  # a generation path that returns sampling logprobs has no value for the guides
            raise RuntimeError("guide_rollouts needs a generation path without sampling logprobs")
        completion_ids: list[list[int]] = [[] for _ in prompt_ids]
        for i, ids in zip(sampled, own):
            completion_ids[i] = ids
        tokenizer, limit = self._tokenizer, self.args.max_completion_length
        for i in sorted(guided):
            text = guide_completion(rows[i]["expert_step"], self.args.think_prefill)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            completion_ids[i] = ids[:limit]
            self.guided_completions += 1
        return completion_ids, None
