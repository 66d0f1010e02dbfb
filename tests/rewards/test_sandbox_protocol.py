"""The two-process code sandbox with honest candidates: every test form scores 1.0, what crosses between the
children is plain data, and what a test cannot do under this design fails (never passes) the test."""

from __future__ import annotations

import math

import pytest

from srl_rlvr.rewards import code_test_reward
from srl_rlvr.rewards.code import as_test_snippets
from srl_rlvr.rewards.sandbox import run_python_tests
from srl_rlvr.rewards.sandbox_wire import WireError, dumps, from_tree, loads, to_tree

HONEST = '''
import math
from typing import List

LIMIT = 10

def f(x):
    if x < 0:
        raise ValueError("negative")
    return x + 1

def incr_all(items: List[int]) -> None:
    for i in range(len(items)):
        items[i] += 1

def squares(n):
    for i in range(n):
        yield i * i

class Stack:
    def __init__(self):
        self.items = []
    def push(self, x):
        self.items.append(x)
    def pop(self):
        return self.items.pop()

def describe(**kwargs):
    return sorted(kwargs.items())

def odd_values():
    return [float("nan"), float("inf"), -0.0, b"\\x00\\xff", {1, 2}, frozenset({3}), {(1, 2): [None, True]},
            "\\u00e9\\udc80", 10 ** 40]
'''
FORMS = {
    "eq_literal": "assert f(1) == 2",
    "general_assert": "assert f(2) > 2 and f(0) < f(1)",
    "abs_tolerance": "assert abs(f(0.5) - 1.5) < 1e-9",
    "expects_an_exception": "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no')",
    "stdlib_module_the_candidate_imported": "assert math.isclose(f(1), 2.0)",
    "module_level_constant": "assert LIMIT == 10",
    "in_place_change_of_an_argument": "items = [1, 2]\nincr_all(items)\nassert items == [2, 3]",
    "generator": "assert list(squares(4)) == [0, 1, 4, 9]",
    "class_instance_and_methods": "s = Stack()\ns.push(3)\ns.push(4)\nassert s.pop() == 4 and s.items == [3]",
    "keyword_arguments": "assert describe(b=2, a=1) == [('a', 1), ('b', 2)]",
    "odd_plain_values": (
        "import math\nv = odd_values()\n"
        "assert math.isnan(v[0]) and v[1] == math.inf and math.copysign(1, v[2]) == -1\n"
        "assert v[3:] == [b'\\x00\\xff', {1, 2}, frozenset({3}), {(1, 2): [None, True]}, '\\u00e9\\udc80', 10 ** 40]"
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_an_honest_candidate_passes_each_test_form(form):
    result = run_python_tests(HONEST, [FORMS[form]])
    assert result.passed == (True,), result
    assert result.judged_outside == (True,)


def test_an_honest_candidate_scores_one_on_all_forms_at_once_and_a_wrong_one_zero():
    assert code_test_reward(f"```python\n{HONEST}```", list(FORMS.values())) == 1.0
    wrong = HONEST.replace('raise ValueError("negative")', "return 0").replace("return x + 1", "return -x")
    wrong = wrong.replace("items[i] += 1", "items[i] += 2")
    assert code_test_reward(wrong, list(FORMS.values())[:5] + [FORMS["in_place_change_of_an_argument"]]) == 0.0


def test_human_eval_check_with_entry_point():
    tests = "def check(candidate):\n    assert candidate(1) == 2\n    assert abs(candidate(0.5) - 1.5) < 1e-9\n"
    assert code_test_reward(HONEST, tests, entry_point="f") == 1.0
    assert code_test_reward(HONEST.replace("x + 1", "x"), tests, entry_point="f") == 0.0


def test_an_entry_point_named_like_a_builtin_is_refused():
    # the tests always see the real builtins, so check(max) would test max itself and pass any candidate
    with pytest.raises(ValueError, match="builtin"):
        as_test_snippets("def check(candidate):\n    assert candidate([1]) == 1\n", entry_point="max")


# --- what a test cannot do now, and how it fails -----------------------------------------------------------
def test_passing_a_callable_or_an_object_to_the_candidate_fails_the_test():
    code = "def apply(fn, x):\n    return fn(x)\n"
    tests = [
        "assert apply(lambda v: v + 1, 1) == 2",
        "try:\n    apply(object(), 1)\nexcept Exception:\n    pass",  # catching it doesn't help
    ]
    result = run_python_tests(code, tests)
    assert result.passed == (False, False)
    assert all(outcome.startswith("candidate:not plain data") for outcome in result.outcomes), result


def test_objects_from_the_candidate_cannot_be_compared_or_tested_for_truth():
    code = "class P:\n    pass\ndef make():\n    return P()\n"
    result = run_python_tests(code, ["assert make() == make()", "assert make()", "assert make() is not None"])
    assert result.passed == (False, False, True)
    assert result.outcomes[:2] == ("TypeError", "TypeError")


def test_the_candidate_cannot_redefine_builtins_or_stdlib_modules_for_the_tests():
    code = "len = lambda x: 3\nclass json:\n    dumps = staticmethod(lambda x: 'forged')\ndef f():\n    return [1]\n"
    result = run_python_tests(code, ["assert len(f()) == 1", "assert json.dumps(f()) == '[1]'"])
    assert result.passed == (True, True)  # the real len, the real json module


def test_a_def_named_like_a_stdlib_module_is_callable_but_has_no_attributes():
    code = "def random(x):\n    return x * 2\nrandom.choice = lambda seq: 'forged'\n"
    result = run_python_tests(code, ["assert random(2) == 4", "assert random.choice([1]) == 'forged'"])
    assert result.passed == (True, False)


def test_the_children_share_no_descriptor():
    listing = (
        "import os\n"
        "def descriptors():\n"
        "    links = {}\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            links[fd] = os.readlink(f'/proc/self/fd/{fd}')\n"
        "        except OSError:\n"
        "            pass  # the descriptor listdir itself used\n"
        "    return links\n"
    )
    code = listing
    test = (
        "theirs = descriptors()\n"
        + listing.replace("def descriptors", "def my_descriptors")
        + "mine = my_descriptors()\n"
        "pipes = lambda links: {link for link in links.values() if link.startswith('pipe:')}\n"
        "assert len(pipes(theirs)) == 2 and len(pipes(mine)) == 2 and not pipes(theirs) & pipes(mine)\n"
        "assert all(link == '/dev/null' or link.startswith(('pipe:', '/proc/')) for link in theirs.values())\n"
    )
    result = run_python_tests(code, [test])
    assert result.passed == (True,), result


def test_a_frame_header_announcing_too_much_makes_the_candidate_gone():
    code = "import os\nfor fd in range(3, 16):\n    try:\n        os.write(fd, b'\\xff\\xff\\xff\\xff')\n" \
           "    except OSError:\n        pass\ndef f(x):\n    return x + 1\n"
    result = run_python_tests(code, ["assert f(1) == 2", "assert True"])
    assert result.passed == (False, False)  # gone before it named its functions: nothing to test
    assert result.candidate_gone == "oversized frame"
    assert result.outcomes[1] == f"candidate:gone ({result.candidate_gone})"


# --- the wire -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    None, True, 0, -(10**30), 1.5, math.inf, -0.0, "", "\u00e9\udc80", b"\x00", [], (), set(), frozenset(), {},
    [1, [2, (3, {4: {5}})]], {(1, "a"): [None, b"x"]},
])
def test_plain_data_crosses_exactly(value):
    back = from_tree(loads(dumps(["ok", to_tree(value)]))[1])
    assert type(back) is type(value) and repr(back) == repr(value)


def test_nan_crosses():
    assert math.isnan(from_tree(loads(dumps(["ok", to_tree(float("nan"))]))[1]))


class _Int(int):
    pass


class _Str(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize("value", [_Int(1), [_Str("a")], {1: object()}, (lambda: 1), iter([]), range(3), bytearray()])
def test_anything_else_is_not_plain_data(value):
    with pytest.raises(WireError, match="not plain data"):
        to_tree(value)


@pytest.mark.parametrize("tree", [
    {"a": 1}, ["x"], ["l", {"a": 1}], ["d", 1], ["s", ["l"]], ["d", ["l"], 1], ["b", "zz"], ["b", 1], ["h", 1],
    ["h", "1"], [],
])
def test_malformed_trees_are_refused(tree):
    with pytest.raises(WireError):
        from_tree(tree)


def test_limits_on_depth_size_and_message_form():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(WireError, match="deeply nested"):
        to_tree(deep)
    with pytest.raises(WireError, match="deeply nested"):
        from_tree(_nested_tree(200))
    with pytest.raises(WireError, match="too large"):
        dumps(["ok", "x" * (9 * 1024 * 1024)])
    for data in (b"{}", b"[]", b"[1]", b"not json", b"\xff"):
        with pytest.raises(WireError):
            loads(data)


def _nested_tree(depth: int) -> list:
    tree: list = ["l"]
    for _ in range(depth):
        tree = ["l", tree]
    return tree


def test_handles_stand_for_objects_that_stay_behind():
    kept: list = []
    tree = to_tree([1, object()], handle_of=lambda obj: kept.append(obj) or len(kept))
    assert tree == ["l", 1, ["h", 1]]
    assert from_tree(tree, make_handle=lambda n: f"handle {n}") == [1, "handle 1"]


@pytest.mark.parametrize("bwrap", [False, True], ids=["plain", "bwrap"])
def test_the_file_tree_a_child_may_read_still_holds_the_stdlib_and_the_installed_packages(bwrap):
    pytest.importorskip("numpy")
    code = (
        "import mimetypes, platform, zoneinfo\nimport numpy as np\n"
        "def probe():\n"
        "    return [mimetypes.guess_type('a.json')[0], str(zoneinfo.ZoneInfo('Europe/Paris')),\n"
        "            int(np.arange(4).sum()), bool(platform.python_version())]\n"
    )
    result = run_python_tests(code, ["assert probe() == ['application/json', 'Europe/Paris', 6, True]"], _bwrap=bwrap)
    assert result.passed == (True,), result
