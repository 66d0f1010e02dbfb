"""Code reward: the fraction of a candidate program's tests that pass, run in the sandbox (``sandbox.py``)."""

from __future__ import annotations

import builtins
import re

from srl_rlvr.rewards.sandbox import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, run_python_tests

THINK_CLOSE = "</think>"
# A closed block tagged python/py/python3, or untagged; other languages (```bash) are not code to run.
_FENCED_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
# A generation cut off inside its python block still deserves a try.
_UNCLOSED_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n(.*)\Z", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The program in a completion: the last fenced python block, else the text after the last
    ``</think>``, else the whole completion.

    >>> extract_code("Here:\\n```python\\nx = 1\\n```\\nbetter:\\n```python\\nx = 2\\n```")
    'x = 2\\n'
    >>> extract_code("<think>plan</think>def f():\\n    return 1")
    'def f():\\n    return 1'
    >>> extract_code("def f():\\n    return 1")
    'def f():\\n    return 1'
    """
    blocks = _FENCED_BLOCK.findall(completion)
    if blocks:
        return blocks[-1]
    unclosed = _UNCLOSED_PYTHON_BLOCK.search(completion)
    if unclosed:
        return unclosed.group(1)
    _, separator, tail = completion.rpartition(THINK_CLOSE)
    return tail if separator else completion


def as_test_snippets(tests: str | list[str], entry_point: str | None = None) -> list[str]:
    """The snippets the sandbox runs, one per counted test.

    A list holds one assertion snippet per test. A string is one HumanEval-style test program; with
    ``entry_point`` it must define ``check(candidate)`` and we append ``check(<entry_point>)``.

    >>> as_test_snippets(["assert f(1) == 2", "assert f(2) == 3"])
    ['assert f(1) == 2', 'assert f(2) == 3']
    >>> as_test_snippets("def check(candidate):\\n    assert candidate(1) == 2\\n",
    ...                  entry_point="f")[0].splitlines()[-1]
    'check(f)'
    """
    if isinstance(tests, str):
        if not tests.strip():
            raise ValueError("no tests: the test string is empty")
        if entry_point is None:
            return [tests]
        if not entry_point.isidentifier():
            raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
        if hasattr(builtins, entry_point):  # the tests see the real builtins: check(max) would test max itself
            raise ValueError(f"entry_point {entry_point!r} is the name of a builtin")
        return [f"{tests}\n\ncheck({entry_point})\n"]
    if entry_point is not None:
        raise ValueError("entry_point applies only to a HumanEval-style test string, not to a list of asserts")
    snippets = list(tests)
    if not snippets:
        raise ValueError("no tests: the test list is empty")
    return snippets


def code_test_reward(
    completion: str,
    tests: str | list[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    entry_point: str | None = None,
    sandbox: str | None = None,
) -> float:
    """Fraction in ``[0, 1]`` of ``tests`` (see :func:`as_test_snippets`) that the completion's code passes.

    The code (:func:`extract_code`) runs in one sandboxed process and the tests, in order and sharing a
    namespace, in another, where the code's top-level names stand for its objects and calls cross as plain data
    (``sandbox.py``); ``timeout_s`` bounds the whole run, and tests that had not finished by then fail.
    A completion with no code at all scores 0.0 without starting a process. ``sandbox``: ``strict``
    (default, ``$SRL_RLVR_SANDBOX``) refuses to run without every isolation layer; ``weak`` runs anyway
    and logs what is missing (``sandbox.py``).

    >>> code_test_reward("```python\\ndef f(x):\\n    return x + 1\\n```", ["assert f(1) == 2", "assert f(2) == 4"])
    0.5
    """
    snippets = as_test_snippets(tests, entry_point)
    code = extract_code(completion)
    if not code.strip():
        return 0.0
    return run_python_tests(code, snippets, timeout_s=timeout_s, memory_mb=memory_mb, sandbox=sandbox).pass_fraction
