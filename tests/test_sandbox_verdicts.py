"""Verdicts decided outside the model's process (harness.scoring.code) and the plain-value codec
that carries results out of the sandbox (harness.sandbox.plain). Real sandbox, tiny programs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.sandbox import plain
from harness.scoring.code import FunctionTest, check_functions, io_test

ADD_REF = "def add(x, y):\n    return x + y\n"


# ---- plain values --------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, True, 0, -7, 10**40, 1.5, "é\n", b"\x00\xff", 2 + 3j, [1, [2]], (1, (2,)),
                                   {1: "a", (2, 3): [4]}, {1, 2}, frozenset({"a"}), [], (), {}])
def test_plain_values_round_trip_with_their_types(value):
    back = plain.loads(plain.dumps(value))
    assert back == value and type(back) is type(value)


def test_special_floats_and_numpy_become_plain():
    assert math.isnan(plain.loads(plain.dumps(float("nan"))))
    assert plain.loads(plain.dumps([float("inf"), -math.inf])) == [math.inf, -math.inf]
    assert plain.loads(plain.dumps(np.int64(3))) == 3 and type(plain.loads(plain.dumps(np.float32(0.5)))) is float
    assert plain.loads(plain.dumps(np.arange(3))) == [0, 1, 2]


def test_stdlib_dict_subclasses_travel_as_dicts_that_compare_equal():
    import collections

    for v in (collections.Counter("abca"), collections.OrderedDict(b=1, a=2), collections.defaultdict(int, x=1)):
        back = plain.loads(plain.dumps(v))
        assert type(back) is dict and back == v  # Mbpp/88's freq_count returns a Counter
    with pytest.raises(plain.PlainValueError):  # a user subclass of Counter is still refused
        plain.dumps(type("C", (collections.Counter,), {})("ab"))


def test_canonical_text_tells_types_apart():
    assert len({plain.canonical(plain.dumps(v)) for v in (1, 1.0, True, "1", (1,), [1])}) == 6


@pytest.mark.parametrize("value", [type("Eq", (), {"__eq__": lambda s, o: True})(), type("I", (int,), {})(3),
                                   object(), [lambda: 0]])
def test_non_plain_values_are_refused(value):
    with pytest.raises(plain.PlainValueError):
        plain.dumps(value)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"$x": 1}', '{"$t": 1}', '{"a": 1, "b": 2}',
                                  '{"$s": [[1]]}', '{"$f": "1.0"}', "not json", '"' + "x" * (2 << 20) + '"'])
def test_untrusted_text_is_refused_not_crashed_on(text):
    with pytest.raises(plain.PlainValueError):
        plain.loads(text)


def test_depth_scan_ignores_brackets_inside_strings():
    assert plain.json_depth('["[[[[[[", {"a": "]]]"}]') == 2


# ---- verdicts ------------------------------------------------------------------------------
def verdicts(programs: dict[str, str | None], test: FunctionTest, timeout_s: float = 3.0):
    res = check_functions([(k, p, test) for k, p in programs.items()], timeout_s=timeout_s)
    return {k: v.outcome for k, v in res.items()}, res


def test_results_that_are_not_plain_cross_as_opaque_stand_ins():
    """A re.Match (EvalPlus's not-None tasks, Mbpp/737) comes back as an Opaque: a not-None
    test passes on it, an equality test fails on it, and nothing of the object crosses."""
    ref = "import re\ndef find(s):\n    return re.search('a', s)\n"
    not_none = FunctionTest(entry_point="find", reference=ref,
                            test="def check(candidate):\n    assert candidate('xa') is not None\n")
    out, _ = verdicts({"match": ref, "none": "def find(s):\n    return None\n"}, not_none)
    assert out == {"match": "passed", "none": "failed"}
    equal = FunctionTest(entry_point="add", reference=ADD_REF, test="def check(candidate):\n    assert candidate(2, 3) == 5\n")
    sneaky = "class Five:\n    def __eq__(self, o):\n        return True\ndef add(x, y):\n    return Five()\n"
    out, _ = verdicts({"sneaky": sneaky}, equal)
    assert out == {"sneaky": "failed"}  # its always-equal __eq__ stayed in its own process
    assert repr(plain.loads(plain.dumps_opaque(object()))) == "<opaque builtins.object>"


def test_results_of_a_few_megabytes_are_compared_not_refused():
    """Mbpp/630 returns 2.0M characters for one call: within the 4 MiB cap, on both sides."""
    ref = "def big(n):\n    return [[i, i + 1] for i in range(n)]\n"
    test = FunctionTest(entry_point="big", reference=ref, test="def check(candidate):\n    assert len(candidate(200000)) == 200000\n")
    out, res = verdicts({"same": ref, "off": "def big(n):\n    return [[i, i] for i in range(n)]\n"}, test)
    assert out == {"same": "passed", "off": "passed"}, res  # the test only checks the length
    strict = test.model_copy(update={"test": "def check(candidate):\n    assert candidate(200000) == __reference__(200000)\n"})
    out, res = verdicts({"same": ref, "off": "def big(n):\n    return [[i, i] for i in range(n)]\n"}, strict)
    assert out == {"same": "passed", "off": "failed"}, res


def test_outcomes_of_the_usual_failures():
    test = FunctionTest(entry_point="add", reference=ADD_REF, test="def check(candidate):\n    assert candidate(2, 3) == 5\n")
    out, res = verdicts({"good": ADD_REF, "wrong": "def add(x, y):\n    return x - y\n", "none": None,
                         "syntax": "def add(x, y) return 1", "missing": "def plus(x, y):\n    return x + y\n",
                         "raises": "def add(x, y):\n    raise ValueError('no')\n",
                         "slow": "def add(x, y):\n    while True:\n        pass\n",
                         "import_error": "import no_such_module\n" + ADD_REF}, test, timeout_s=1.0)
    assert out == {"good": "passed", "wrong": "failed", "none": "no code found", "syntax": "syntax error",
                   "missing": "failed", "raises": "runtime error", "slow": "timeout", "import_error": "runtime error"}
    assert res["wrong"].first_failing_test == "assert candidate(2, 3) == 5"
    assert "ValueError" in res["raises"].reason


def test_replay_keeps_the_tests_own_comparison():
    """Tolerances, types and expected exceptions are the test's, not a stricter equality."""
    test = FunctionTest(entry_point="f", reference="def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x / 3\n",
                        test="def check(candidate):\n    assert abs(candidate(1) - 1 / 3) < 1e-6\n"
                             "    try:\n        candidate(-1)\n    except ValueError:\n        pass\n"
                             "    else:\n        assert False, 'expected ValueError'\n")
    out, res = verdicts({
        "exact": "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x / 3\n",
        "close": "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x / 3 + 1e-9\n",
        "far": "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return 0.3\n",
        "no_raise": "def f(x):\n    return x / 3\n",
        "wrong_exc": "def f(x):\n    if x < 0:\n        raise KeyError(x)\n    return x / 3\n"}, test)
    assert out == {"exact": "passed", "close": "passed", "far": "failed", "no_raise": "failed",
                   "wrong_exc": "runtime error"}


def test_tuple_is_not_list():
    test = FunctionTest(entry_point="f", reference="def f():\n    return (1, 2)\n",
                        test="def check(candidate):\n    assert candidate() == (1, 2)\n")
    out, _ = verdicts({"tuple": "def f():\n    return (1, 2)\n", "list": "def f():\n    return [1, 2]\n"}, test)
    assert out == {"tuple": "passed", "list": "failed"}


def test_without_a_reference_calls_are_discovered_by_replaying():
    """Inputs computed from earlier results cannot be recorded up front: each new call is run
    in a new program process and the test replayed (also MBPP without a reference)."""
    test = FunctionTest(entry_point="inc", test="def check(candidate):\n    y = candidate(1)\n    z = candidate(y * 10)\n"
                                                "    assert (y, z) == (2, 21)\n")
    out, _ = verdicts({"good": "def inc(x):\n    return x + 1\n", "bad": "def inc(x):\n    return x + 2\n"}, test)
    assert out == {"good": "passed", "bad": "failed"}


def test_io_test_with_expected_values_or_the_reference():
    expected = FunctionTest(entry_point="half", test=io_test("half", [[1], [3]], [0.5, 1.5]))
    from_ref = FunctionTest(entry_point="half", reference="def half(x):\n    return x / 2\n",
                            test=io_test("half", [[1], [3]]))
    for t in (expected, from_ref):
        out, _ = verdicts({"good": "def half(x):\n    return x / 2 + 1e-12\n",
                           "bad": "def half(x):\n    return x // 2\n"}, t)
        assert out == {"good": "passed", "bad": "failed"}


def test_tests_with_non_plain_arguments_fall_back_to_in_process_and_say_so():
    test = FunctionTest(entry_point="apply", reference="def apply(fn, x):\n    return fn(x)\n",
                        test="def check(candidate):\n    assert candidate(lambda v: v * 2, 4) == 8\n")
    _, res = verdicts({"good": "def apply(fn, x):\n    return fn(x)\n", "bad": "def apply(fn, x):\n    return x\n"}, test)
    assert {k: (v.outcome, v.decided_by) for k, v in res.items()} == {
        "good": ("passed", "in-process"), "bad": ("failed", "in-process")}
