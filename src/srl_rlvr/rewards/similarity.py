"""``difflib.SequenceMatcher(None, a, b).ratio()``, bit for bit, computed with cdifflib's C matcher.

cdifflib (``CSequenceMatcher``) subclasses difflib's matcher and re-implements ``find_longest_match``,
the b2j/junk/popular bookkeeping (``chain_b``, autojunk included: elements of ``b`` seen more than
``len(b) // 100 + 1`` times are dropped once ``len(b) >= 200``) and the matching-block recursion in C.
``ratio()`` itself is inherited: ``2.0 * M / T`` from the same integers, so the float is identical whenever
the total matched size ``M`` is. We checked ``M`` against difflib on 20k random pairs (lengths 0..800,
tiny and full-unicode alphabets, autojunk on both sides of 200) and ``tests/rewards`` keeps proving it
with hypothesis. Still, a Python upgrade could change difflib under us, so the first call re-checks a
handful of autojunk-heavy pairs and falls back to plain difflib for good if any disagrees.
"""

from __future__ import annotations

from difflib import SequenceMatcher

try:  # optional at import time so the package still works (slower) without the C extension
    from cdifflib import CSequenceMatcher as _CSequenceMatcher
except ImportError:  # pragma: no cover - cdifflib is a declared dependency
    _CSequenceMatcher = None

# cdifflib builds the matching blocks by C recursion (difflib uses an explicit queue). Below this size the
# depth is harmless (8k nested blocks ran fine on a 256 KiB stack, 20k in a thread); above it the quadratic
# cost dwarfs any speedup anyway, so we hand such inputs to difflib rather than risk the C stack.
_FAST_MAX_TOTAL_CHARS = 100_000

# Autojunk needs len(b) >= 200; below it a string equal to the other is one single matching block.
_AUTOJUNK_MIN_LEN = 200

_fast_matcher_verified: bool | None = None  # None = not checked yet


def _self_check_pairs() -> list[tuple[str, str]]:
    """Pairs that exercise autojunk (popular characters), junk extension and the empty edge."""
    pairs = [("", ""), ("a", ""), ("abc", "abc"), ("abcd", "bcde"), ("private", "privet")]
    pairs.append(("ab" * 150, "ba" * 150))
    pairs.append(("x" * 300 + "y", "y" + "x" * 300))
    pairs.append(("the cat sat on the mat " * 12, "a cat sat on a mat " * 15))
    pairs.append(("".join(chr(0x4E00 + i % 37) for i in range(400)),
                  "".join(chr(0x4E00 + i % 41) for i in range(450))))
    pairs.append(("step 1: x = 2\n" * 20, "step 1: x = 3\n" * 20))
    return pairs


def _fast_matcher_agrees() -> bool:
    """True when cdifflib reproduces difflib's ratio on the self-check pairs (checked once per process)."""
    global _fast_matcher_verified
    if _fast_matcher_verified is None:
        _fast_matcher_verified = _CSequenceMatcher is not None and all(
            _CSequenceMatcher(None, a, b).ratio() == SequenceMatcher(None, a, b).ratio()
            for a, b in _self_check_pairs()
        )
    return _fast_matcher_verified


def uses_cdifflib() -> bool:
    """Whether :func:`difflib_ratio` runs on cdifflib in this process (False means plain difflib).

    >>> isinstance(uses_cdifflib(), bool)
    True
    """
    return _fast_matcher_agrees()


def difflib_ratio(a: str, b: str) -> float:
    """Return exactly ``difflib.SequenceMatcher(None, a, b).ratio()`` (default ``autojunk=True``).

    That is ``2.0 * M / T``: ``M`` matched characters, ``T = len(a) + len(b)``; ``1.0`` when both are empty.

    >>> difflib_ratio("abcd", "abce")
    0.75
    >>> difflib_ratio("", "")
    1.0
    >>> difflib_ratio("abc", "")
    0.0
    """
    if not a or not b:
        # No element can match: difflib returns 2*0/T = 0.0, or 1.0 when T == 0 (its _calculate_ratio).
        return 1.0 if not a and not b else 0.0
    if a == b and len(b) < _AUTOJUNK_MIN_LEN:
        return 1.0  # one block of len(a) matches: 2*n / 2n is exactly 1.0
    if len(a) + len(b) <= _FAST_MAX_TOTAL_CHARS and _fast_matcher_agrees():
        return _CSequenceMatcher(None, a, b).ratio()
    return SequenceMatcher(None, a, b).ratio()
