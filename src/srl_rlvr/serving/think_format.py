"""The SRL model adapter: prompts formatted as in training, and the ``<think>`` monologue split off.

Models trained with the SRL format answer ``<think>monologue</think>action``; with ``think_prefill``
the prompt already ends with ``<think>`` (see :func:`srl_rlvr.prompts.render_generation_prompt`).
The server puts the prefill back (:func:`srl_rlvr.prompts.with_prefill`) and answers with the
monologue in ``reasoning_content`` and the action in ``content``, as vLLM's reasoning parsers do.

A well-formed completion is split exactly as :func:`srl_rlvr.rewards.srl.parse_think_action` (the
reward's own parser) splits it. A malformed one is split leniently: text before the first
``</think>`` is reasoning, the rest is content; without an opening ``<think>`` it is all content.
Streaming uses the same rules incrementally, so the streamed deltas add up to the non-streamed answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srl_rlvr.prompts import THINK_PREFILL, render_generation_prompt, with_prefill
from srl_rlvr.rewards.srl import THINK_CLOSE, THINK_OPEN, parse_think_action

REASONING, CONTENT = "reasoning_content", "content"


@dataclass(frozen=True)
class ThinkFormat:
    """How one served model (base or adapter) is prompted and how its answers are split."""

    prefill: bool | str = False  # chat prompts end with "<think>" ("empty": "<think></think>")
    split: bool = False  # monologue -> reasoning_content

    def render(self, tokenizer: Any, messages: list[dict[str, Any]]) -> str:
        return render_generation_prompt(tokenizer, messages, self.prefill)

    def splitter(self) -> ThinkSplitter | None:
        # an empty prefill closes the monologue before generation starts: the stream is all content
        return ThinkSplitter(prefilled=self.prefill is True) if self.split else None

    def answer(self, completion: str) -> tuple[str | None, str]:
        """(reasoning_content or None, content) for a finished chat completion (prefill not yet put back)."""
        text = with_prefill(completion, self.prefill)
        return split_completion(text) if self.split else (None, text)


def resolve_think_format(model_dir: str | None, prefill: bool | str, split: bool | str) -> ThinkFormat:
    """``"auto"`` settings follow the model folder's stage manifest (``think_prefill``); ``split`` auto
    follows the resolved ``prefill``: a prefilled model answers in the think format."""
    manifest = False
    if "auto" in (prefill, split) and model_dir:
        from srl_rlvr.eval.harness import model_think_prefill

        manifest = model_think_prefill(model_dir)
    use_prefill = manifest if prefill == "auto" else (prefill if prefill == "empty" else bool(prefill))
    use_split = use_prefill if split == "auto" else bool(split)
    return ThinkFormat(prefill=use_prefill, split=use_split)


def split_completion(text: str) -> tuple[str | None, str]:
    """Split a full completion (prefill already put back) into (reasoning or None, content).

    >>> split_completion("<think> add them </think> x = 5")
    ('add them', 'x = 5')
    >>> split_completion("<think>still thinking")
    ('still thinking', '')
    >>> split_completion("x = 5")
    (None, 'x = 5')
    """
    parsed = parse_think_action(text)
    if parsed is not None:
        return parsed
    splitter = ThinkSplitter()
    parts = splitter.feed(text) + splitter.finish()
    reasoning = "".join(t for kind, t in parts if kind == REASONING)
    content = "".join(t for kind, t in parts if kind == CONTENT)
    return (reasoning if splitter.saw_think else None), content


class ThinkSplitter:
    """Incremental split of streamed text into ``(kind, text)`` parts, kind REASONING or CONTENT.

    Each section is stripped of surrounding whitespace (as parse_think_action strips), so whitespace
    is held back until non-space text follows, and a partial tag at the end of a chunk is held back
    until the next chunk shows whether it is the tag.

    >>> s = ThinkSplitter(prefilled=True)
    >>> s.feed("plan it </th") + s.feed("ink> x = 5 ") + s.finish()
    [('reasoning_content', 'plan it'), ('content', 'x = 5')]
    """

    def __init__(self, prefilled: bool = False):
        self._state = "think" if prefilled else "start"
        self.saw_think = prefilled
        self._buf = ""
        self._held_space = ""
        self._section_started = False

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._buf += text
        while True:
            if self._state == "start":
                head = self._buf.lstrip()
                if not head or (THINK_OPEN.startswith(head) and head != THINK_OPEN):
                    return out  # undecided: whitespace, or maybe the start of "<think>"
                if head.startswith(THINK_OPEN):
                    self._state, self.saw_think, self._buf = "think", True, head[len(THINK_OPEN):]
                else:
                    self._state, self._buf = "content", head
            elif self._state == "think":
                end = self._buf.find(THINK_CLOSE)
                if end >= 0:
                    self._emit(out, REASONING, self._buf[:end])
                    self._buf = self._buf[end + len(THINK_CLOSE):]
                    self._state, self._held_space, self._section_started = "content", "", False
                    continue
                keep = _partial_suffix(self._buf, THINK_CLOSE)
                self._emit(out, REASONING, self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep:]
                return out
            else:
                self._emit(out, CONTENT, self._buf)
                self._buf = ""
                return out

    def finish(self) -> list[tuple[str, str]]:
        """Flush what was held back (a partial tag is literal text now); trailing whitespace is dropped."""
        out: list[tuple[str, str]] = []
        rest, self._buf = self._buf, ""
        if self._state == "start":
            self._state = "content"
            rest = rest.lstrip()
        self._emit(out, REASONING if self._state == "think" else CONTENT, rest)
        return out

    def _emit(self, out: list[tuple[str, str]], kind: str, text: str) -> None:
        if not self._section_started:
            text = text.lstrip()
            if not text:
                return
            self._section_started = True
        text = self._held_space + text
        body = text.rstrip()
        self._held_space = text[len(body):]
        if body:
            out.append((kind, body))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``.

    >>> _partial_suffix("abc</thi", "</think>")
    5
    """
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


__all__ = ["CONTENT", "REASONING", "THINK_PREFILL", "ThinkFormat", "ThinkSplitter", "resolve_think_format",
           "split_completion"]
