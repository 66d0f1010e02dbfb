"""Drop prompts that overlap an eval set: any shared 8-gram of words counts.

Texts are lowercased, punctuation is stripped (``don't`` -> ``dont``, ``3.5`` -> ``35``) and the rest split on
whitespace; a prompt whose problem shares any run of :data:`NGRAM` consecutive words with any eval
problem is contaminated. A text shorter than 8 words has no 8-gram, so it can match nothing.

Eval files are JSONL rows with the problem in ``problem`` (trajectory files, AIME) or ``question`` (s1K,
AMC23); a row with neither, or a line that is not JSON, is an error naming ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from srl_rlvr.data.loaders.jsonl import iter_json_objects
from srl_rlvr.errors import InvalidRecord

NGRAM = 8
PROBLEM_FIELDS = ("problem", "question")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def words(text: str) -> list[str]:
    """Lowercased words with punctuation stripped.

    >>> words("Mia's 3.5 apples -- ALL of them!")
    ['mias', '35', 'apples', 'all', 'of', 'them']
    """
    return _PUNCTUATION.sub("", text.lower()).split()


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of ``text``.

    >>> sorted(ngrams("a b c d", n=3))
    [('a', 'b', 'c'), ('b', 'c', 'd')]
    >>> ngrams("too short", n=3)
    set()
    """
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@dataclass(frozen=True)
class Match:
    """Where a contaminated prompt's overlap came from."""

    path: str
    line: int
    ngram: str


class EvalIndex:
    """The 8-grams of every problem in some eval files, each with the first ``file:line`` that holds it."""

    def __init__(self, paths: list[Path] | tuple[Path, ...] = ()):
        self.paths = [Path(p) for p in paths]
        self.grams: dict[tuple[str, ...], tuple[str, int]] = {}
        self.problems: dict[str, int] = {}  # file -> problems read from it
        for path in self.paths:
            self._add_file(path)

    def _add_file(self, path: Path) -> None:
        self.problems[str(path)] = 0
        for line, obj in iter_json_objects(path):
            if isinstance(obj, InvalidRecord):
                raise obj
            if not isinstance(obj, dict):
                raise InvalidRecord(str(path), line, "<row>", f"expected a JSON object, got {type(obj).__name__}")
            text = next((obj[f] for f in PROBLEM_FIELDS if isinstance(obj.get(f), str) and obj[f].strip()), None)
            if text is None:
                raise InvalidRecord(str(path), line, "problem", "is required (or 'question') as a non-empty string")
            self.problems[str(path)] = self.problems.get(str(path), 0) + 1
            for gram in ngrams(text):
                self.grams.setdefault(gram, (str(path), line))

    def match(self, problem: str) -> Match | None:
        """The first eval 8-gram ``problem`` shares (in the problem's word order), or None."""
        w = words(problem)
        for i in range(len(w) - NGRAM + 1):
            gram = tuple(w[i:i + NGRAM])
            if gram in self.grams:
                path, line = self.grams[gram]
                return Match(path, line, " ".join(gram))
        return None
