"""Prompt features for the difficulty predictor: a few cheap counts, plus optional hashed word n-grams.

The counts stand for what makes a word problem hard for a small model: how long it is, how many numbers
it holds and how big they get, how many operations (symbols and words such as "doubles", "gives away")
and sequence words ("first", "then", "finally") it chains. Hashed unigrams and bigrams (``hash_dim > 0``)
let the predictor pick up topic words on other tasks. Everything is plain Python with precompiled
regexes, so one prompt costs tens of microseconds (see bench/router_latency.py).
"""

from __future__ import annotations

import math
import re
import zlib

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SYMBOL_OPS = re.compile(r"[+\-*/×÷^=<>]")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")

ADDITIVE_WORDS = frozenset(
    "more add adds added plus gets get finds buys bakes picks orders given handed trades earn earns total sum "
    "altogether combined increase increases".split()
)
SUBTRACTIVE_WORDS = frozenset(
    "away loses lose sells sell uses use drops donates lends shares spends eats minus fewer less left remaining "
    "difference decrease decreases".split()
)
MULTIPLICATIVE_WORDS = frozenset(
    "times each per doubles triples quadruples twice thrice double triple half halves product multiply divide "
    "divided split percent ratio".split()
)
SEQUENCE_WORDS = frozenset("first then finally after next later before afterwards".split())

FEATURE_NAMES = (
    "log_chars", "words", "sentences", "numbers", "log_max_number", "digits", "symbol_ops",
    "additive_words", "subtractive_words", "multiplicative_words", "sequence_words", "operation_words",
    "question_marks",
)


def prompt_features(prompt: str) -> list[float]:
    """The hand-made features of one prompt, in ``FEATURE_NAMES`` order.

    >>> f = dict(zip(FEATURE_NAMES, prompt_features("Mia has 7 boxes with 6 pens in each. "
    ...     "First she gives away 9 pens, and then she buys 15 more. How many?")))
    >>> f["numbers"], f["digits"], f["sequence_words"], f["operation_words"]
    (4.0, 5.0, 2.0, 4.0)
    """
    text = prompt.lower()
    numbers = _NUMBER.findall(text)
    words = _WORD.findall(text)
    add = sub = mul = seq = 0
    for word in words:
        if word in ADDITIVE_WORDS:
            add += 1
        elif word in SUBTRACTIVE_WORDS:
            sub += 1
        elif word in MULTIPLICATIVE_WORDS:
            mul += 1
        elif word in SEQUENCE_WORDS:
            seq += 1
    max_number = max((float(n) for n in numbers), default=0.0)
    return [
        math.log1p(len(text)),
        float(len(words)),
        float(len(_SENTENCE_END.findall(text)) or 1),
        float(len(numbers)),
        math.log1p(max_number),
        float(sum(len(n) for n in numbers)),
        float(len(_SYMBOL_OPS.findall(text))),
        float(add),
        float(sub),
        float(mul),
        float(seq),
        float(add + sub + mul),
        float(text.count("?")),
    ]


def hashed_ngrams(prompt: str, dim: int) -> list[int]:
    """Sorted, distinct indices in ``[0, dim)`` of the prompt's word unigrams and bigrams (crc32 hashing,
    stable across processes, unlike Python's ``hash``).

    >>> hashed_ngrams("Two apples, two apples", 1024) == hashed_ngrams("two APPLES two apples", 1024)
    True
    >>> hashed_ngrams("anything", 0)
    []
    """
    if dim <= 0:
        return []
    words = _WORD.findall(prompt.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return sorted({zlib.crc32(g.encode("utf-8")) % dim for g in grams})
