"""Results over the sandbox's transport cap cross as the SHA-256 of their canonical encoding
(harness.sandbox.plain.digest / dumps_capped) and are judged by harness.scoring.code: an
oversized right result passes, an oversized wrong one fails, a program cannot pass with a
value it did not return. The caps here are a few thousand characters, so nothing allocates
megabytes."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest

import harness.scoring.code as code
from harness.sandbox import plain
from harness.scoring.code import FunctionTest, check_functions, io_test

CAP = 2000


# ---- the digest ----------------------------------------------------------------------------
VALUES = [None, True, 0, -7, 10**40, 1.5, -0.0, float("inf"), "é\n'\"", b"\x00\xff", 2 + 3j, [1, [2]], (1, (2,)),
          (1,), (), [], {}, {1: "a", (2, 3): [4]}, {1, 2}, frozenset({"a"}), [(1, "x")] * 3, {"k": {3, 4}}]


@pytest.mark.parametrize("value", VALUES)
def test_digest_survives_the_transport(value):
    """The harness, digesting the decoded value, gets what the sandbox got digesting the original."""
    assert plain.digest(plain.loads(plain.dumps(value))) == plain.digest(value)


def test_digest_is_type_strict_like_the_encoding():
    ones = [1, 1.0, True, "1", b"1", (1,), [1], {1}, frozenset({1}), {1: None}, 1 + 0j]
    assert len({plain.digest(v) for v in ones}) == len(ones)
    assert plain.digest([1, 2]) != plain.digest([2, 1])


def test_digest_ignores_set_and_dict_order_and_dict_subclasses():
    assert plain.digest({3, 1, 2}) == plain.digest({2, 3, 1})
    assert plain.digest({"b": 1, "a": 2}) == plain.digest({"a": 2, "b": 1})
    assert plain.digest(collections.Counter("abca")) == plain.digest({"a": 2, "b": 1, "c": 1})
    assert plain.digest(np.arange(3)) == plain.digest([0, 1, 2]) and plain.digest(np.float64(0.5)) == plain.digest(0.5)


def test_digest_of_a_string_set_is_the_same_under_any_hash_seed():
    """Sandbox processes iterate a set of strings in a seed-dependent order."""
    cmd = [sys.executable, "-c", "from harness.sandbox import plain; "
           "print(plain.digest({f'item{i}' for i in range(200)}))"]
    seen = {subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
                           check=True).stdout.strip() for seed in ("1", "2")}
    assert len(seen) == 1 and seen == {plain.digest({f"item{i}" for i in range(200)})}


@pytest.mark.parametrize("value", [(1,), (), [], [1, "a", None, 1.5, True, b"x", 1j], ((1,), [()], ([],)),
                                   [(1, "x"), [2.5, (None,)]]])
def test_fast_path_and_loop_write_the_same_bytes(value):
    """Sequences of scalars are digested through repr() in one call; nested ones item by item.
    Both write Python's repr, so a value digests the same whichever path each level takes."""
    assert plain._digest_bytes(value, 0) == repr(value).encode()


def test_a_digest_equals_only_values_with_its_digest():
    d = plain.loads(plain.dumps_capped([(i, str(i)) for i in range(500)], CAP))
    assert isinstance(d, plain.Digest)
    assert d == [(i, str(i)) for i in range(500)] and [(i, str(i)) for i in range(500)] == d
    assert d != [(i, str(i)) for i in range(499)] and d != [[i, str(i)] for i in range(500)]
    assert d != object() and not (d == type("Eq", (), {"__eq__": lambda s, o: True})())
    for use in (set, len, hash, lambda v: v[0], lambda v: v - 1):
        with pytest.raises(TypeError):
            use(d)


@pytest.mark.parametrize("text", ['{"$h": "abc"}', '{"$h": "' + "A" * 64 + '"}', '{"$h": 1}', '{"$h": "' + "0" * 65 + '"}'])
def test_malformed_digest_tokens_are_refused(text):
    with pytest.raises(plain.PlainValueError):
        plain.loads(text)


@pytest.mark.parametrize("value", VALUES + [["x" * 50] * 30, {i: (i, [i]) for i in range(40)}, {(1, 2), ("a", b"b")}])
def test_size_bound_never_exceeds_the_real_encoding(value):
    """dumps_capped skips building the encoding only when it is surely over the cap (and MBPP+'s
    ground truth skips a repr the same way)."""
    n = len(plain.dumps(value))
    assert not plain.encoded_over(value, n) and not plain.encoded_over(value, len(repr(value)))
    assert plain.dumps_capped(value, n) == plain.dumps(value)
    assert plain.is_digest(plain.dumps_capped(value, n - 1))


def test_size_bound_stops_early_on_a_huge_value():
    huge = [("x" * 10, 1)] * 5_000_000  # 5 M references to one tuple: about 40 MB, ~100 MB encoded
    assert plain.encoded_over(huge, CAP)


# ---- verdicts on oversized results (real sandbox) -------------------------------------------
REF = "def pairs(n):\n    return [(i, str(i)) for i in range(n)]\n"
SAME = "def pairs(n):\n    return list(zip(range(n), map(str, range(n))))\n"
OFF = "def pairs(n):\n    out = [(i, str(i)) for i in range(n)]\n    out[-1] = (n, 'x')\n    return out\n"
LISTS = "def pairs(n):\n    return [[i, str(i)] for i in range(n)]\n"
LYING = ("class S(str):\n    def __repr__(self):\n        return \"'0'\"\n"
         "def pairs(n):\n    return [(i, S(i)) for i in range(n)]\n")


def _verdicts(programs: dict[str, str], test: FunctionTest):
    res = check_functions([(k, p, test) for k, p in programs.items()], timeout_s=10.0, max_output_chars=CAP)
    return {k: v.outcome for k, v in res.items()}, res


def test_oversized_right_result_passes_and_wrong_ones_fail(monkeypatch, tmp_path):
    monkeypatch.setenv(code.CACHE_ENV, str(tmp_path))
    test = FunctionTest(entry_point="pairs", reference=REF,
                        test="def check(candidate):\n    assert candidate(400) == __reference__(400)\n")
    out, res = _verdicts({"same": SAME, "off": OFF, "lists": LISTS, "lying": LYING}, test)
    assert out == {"same": "passed", "off": "failed", "lists": "failed", "lying": "failed"}, res
    assert "compared by its digest" in res["off"].reason


def test_both_sides_over_their_caps(monkeypatch, tmp_path):
    """The reference's recorded result is itself a digest (its cap is 16 MiB in production)."""
    monkeypatch.setenv(code.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(code, "RECORD_MAX_CHARS", CAP)
    test = FunctionTest(entry_point="pairs", reference=REF,
                        test="def check(candidate):\n    assert candidate(401) == __reference__(401)\n")
    out, res = _verdicts({"same": SAME, "off": OFF}, test)
    assert out == {"same": "passed", "off": "failed"}, res


def test_oversized_set_result_built_in_another_order_passes(monkeypatch, tmp_path):
    monkeypatch.setenv(code.CACHE_ENV, str(tmp_path))
    ref = "def names(n):\n    return {f'n{i}' for i in range(n)}\n"
    other = "def names(n):\n    out = set()\n    for i in reversed(range(n)):\n        out.add('n' + str(i))\n    return out\n"
    test = FunctionTest(entry_point="names", reference=ref,
                        test="def check(candidate):\n    assert candidate(400) == __reference__(400)\n")
    out, res = _verdicts({"other": other, "short": ref.replace("range(n)", "range(n - 1)")}, test)
    assert out == {"other": "passed", "short": "failed"}, res


def test_only_exact_equality_can_pass_an_oversized_result(monkeypatch, tmp_path):
    """A float tolerance needs the value: an oversized result 1e-12 off fails (conservative),
    where the same result under the cap passes."""
    monkeypatch.setenv(code.CACHE_ENV, str(tmp_path))
    ref = "def halves(n):\n    return [i / 2 for i in range(n)]\n"
    near = "def halves(n):\n    return [i / 2 + 1e-12 for i in range(n)]\n"
    big = FunctionTest(entry_point="halves", reference=ref, test=io_test("halves", [(400,)], atol=1e-6))
    out, res = _verdicts({"exact": ref, "near": near}, big)
    assert out == {"exact": "passed", "near": "failed"}, res
    small = FunctionTest(entry_point="halves", reference=ref, test=io_test("halves", [(4,)], atol=1e-6))
    out, res = _verdicts({"near": near}, small)
    assert out == {"near": "passed"}, res
