"""EvalPlus's MBPP+ data handling and test oracle, reimplemented from evalplus (Apache-2.0):
evalplus/data/mbpp.py (`mbpp_deserialize_inputs`, MBPP_OUTPUT_NOT_NONE_TASKS),
evalplus/evaluate.py `unsafe_execute` (exact match, special oracles, float tolerance) and
tools/mbpp/fix_v010.py + fix_v011.py (the edits that make v0.2.0 from v0.1.0).

Kept apart from mbpp_plus.py because it is data plumbing, not the benchmark's protocol.
"""

from __future__ import annotations

import copy
import math
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

from harness.sandbox import plain

# tools/mbpp/fix_v011.py (issue evalplus#147): the 21 tasks v0.2.0 drops (399 -> 378).
REMOVED_IN_V020 = frozenset(f"Mbpp/{n}" for n in (
    83, 115, 117, 143, 164, 229, 249, 295, 396, 400, 407, 431, 438, 442, 461, 574, 582, 595, 640, 746, 783))
# tools/mbpp/fix_v010.py (evalplus#156): source URLs removed from these prompts.
URLS_REMOVED_IN_V011 = {
    "Mbpp/734": "https://www.geeksforgeeks.org/sum-of-products-of-all-possible-subarrays/",
    "Mbpp/735": "https://www.geeksforgeeks.org/toggle-bits-number-expect-first-last-bits/",
    "Mbpp/736": "https://www.w3resource.com/python-exercises/data-structures-and-algorithms/"
                "python-data-structure-exercise-24.php",
    "Mbpp/739": "https://www.geeksforgeeks.org/index-of-smallest-triangular-number-with-n-digits/",
    "Mbpp/740": "https://www.geeksforgeeks.org/python-convert-tuple-to-adjacent-pair-dictionary/",
    "Mbpp/743": "https://www.geeksforgeeks.org/python-program-right-rotate-list-n/",
    "Mbpp/745": "https://www.w3resource.com/python-exercises/lambda/python-lambda-exercise-24.php",
    "Mbpp/749": "https://www.geeksforgeeks.org/python-sort-numeric-strings-in-a-list/",
    "Mbpp/751": "https://www.geeksforgeeks.org/how-to-check-if-a-given-array-represents-a-binary-heap/",
    "Mbpp/752": "https://www.geeksforgeeks.org/jacobsthal-and-jacobsthal-lucas-numbers/",
    "Mbpp/753": "https://www.geeksforgeeks.org/python-find-minimum-k-records-from-tuple-list/",
    "Mbpp/757": "https://www.geeksforgeeks.org/python-program-to-count-the-pairs-of-reverse-strings/",
    "Mbpp/763": "https://www.geeksforgeeks.org/find-minimum-difference-pair/",
    "Mbpp/771": "https://www.geeksforgeeks.org/check-for-balanced-parentheses-in-an-expression/",
    "Mbpp/780": "https://www.geeksforgeeks.org/python-combinations-of-sum-with-tuples-in-tuple-list/",
    "Mbpp/781": "https://www.w3resource.com/python-exercises/basic/python-basic-1-exercise-24.php",
    "Mbpp/782": "https://www.geeksforgeeks.org/sum-of-all-odd-length-subarrays/",
    "Mbpp/783": "https://www.geeksforgeeks.org/program-change-rgb-color-model-hsv-color-model/",
    "Mbpp/803": "https://www.geeksforgeeks.org/check-if-given-number-is-perfect-square-in-cpp/",
}
# evalplus/eval/_special_oracle.py: only "is the result not None" is compared for these entry
# points, and these outputs are compared as sets (their references build them from sets, so their
# order depends on the process's string-hash seed).
OUTPUT_NOT_NONE = ("check_str", "text_match_three", "text_starta_endb")
OUTPUT_SET_EQ = ("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                 "intersection_array", "find_dissimilar", "Diff")

_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740,
               744, 809}
_TUPLES_IN_LISTS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_TUPLES = {75, 413, 444, 753}
_SECOND_ARG_TUPLE = {106, 750}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_NESTED_THEN_TUPLE = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _all_tuples(x: Any) -> Any:
    return tuple(_all_tuples(i) for i in x) if isinstance(x, list) else x


def deserialize_inputs(task_id: str, inputs: list) -> list:
    """evalplus mbpp_deserialize_inputs: restore the tuples, sets and complex numbers JSON lost."""
    n = int(task_id.split("/")[-1])
    if n in _TUPLE_ARGS:
        return [[tuple(x) for x in inp] for inp in inputs]
    if n in _TUPLES_IN_LISTS:
        return [[[tuple(x) for x in xs] for xs in inp] for inp in inputs]
    if n in _FIRST_ARG_TUPLES:
        return [[[tuple(x) for x in inp[0]]] + [inp[1]] for inp in inputs]
    if n in _SECOND_ARG_TUPLE:
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if n == 115:
        return [[[set(i) if isinstance(i, list) and len(i) else {} for i in inp[0]]] for inp in inputs]
    if n == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if n in _FIRST_ARG_TUPLE:
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if n in _NESTED_THEN_TUPLE:
        return [[tuple(tuple(x) for x in xs) for xs in inp] for inp in inputs]
    if n == 278:
        return [[tuple(tuple(i) if isinstance(i, list) else i for i in inp[0])] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in _ALL_TUPLES:
        return [_all_tuples(inp) for inp in inputs]
    return inputs


# The oracle, run inside the trusted test (never in the model's process). `__reference__` is
# the canonical solution (harness.scoring.code runs it as the FunctionTest reference).
_PREAMBLE = "import copy\nimport math\nfrom math import inf, nan  # repr() of non-finite inputs\n"
_ORACLE = '''

def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    return False

def _allclose(out, exp, atol):
    # numpy.testing.assert_allclose(out, exp, atol=atol) (rtol 1e-7, NaN == NaN) on scalars
    # and (nested) sequences, the shapes MBPP+ outputs take
    if isinstance(exp, (list, tuple)):
        return isinstance(out, (list, tuple)) and len(out) == len(exp) and all(
            _allclose(o, e, atol) for o, e in zip(out, exp))
    try:
        if isinstance(exp, float) and math.isnan(exp):
            return isinstance(out, float) and math.isnan(out)
        return bool(abs(out - exp) <= atol + 1e-7 * abs(exp))
    except TypeError:
        return False

def _matches(out, exp, atol):
    try:
        exact = bool(out == exp)
    except Exception:
        exact = False
    if _ENTRY == "are_equivalent":  # Mbpp/164 special oracle
        exact = True
    elif _ENTRY == "sum_div":  # Mbpp/295 special oracle
        exact = exact or out == 0
    elif _SET_EQ:  # evalplus: exact_match = set(out) == set(exp)
        try:
            exact = set(out) == set(exp)
        except TypeError:
            exact = False
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        return _allclose(out, exp, atol)
    return exact

def check(candidate):
    for i, args in enumerate(_INPUTS):
        exp = _EXPECTED[i] if _EXPECTED is not None else __reference__(*copy.deepcopy(args))
        out = candidate(*copy.deepcopy(args))
        if _NOT_NONE:  # evalplus: a bool result must equal "exp is not None", else out is not None
            want = exp is not None
            assert (out == want) if isinstance(out, bool) else ((out is not None) == want), args
        else:
            assert _matches(out, exp, _ATOL), args
'''


def oracle_test(entry_point: str, inputs: list, atol: float, expected: str | None = None) -> str:
    """A check(candidate) comparing the program with the canonical solution on `inputs` the
    way EvalPlus does. `expected`: the repr of the reference's outputs computed beforehand
    (EvalPlus's get_groundtruth; expected_outputs()), else the test calls the reference per input."""
    return (_PREAMBLE + f"_INPUTS = {[list(a) for a in inputs]!r}\n_ATOL = {float(atol)!r}\n_ENTRY = {entry_point!r}\n"
            f"_NOT_NONE = {entry_point in OUTPUT_NOT_NONE!r}\n_SET_EQ = {entry_point in OUTPUT_SET_EQ!r}\n"
            f"_EXPECTED = {expected or 'None'}\n" + _ORACLE)


# Budgets of the ground-truth child. Some plus sets make the reference build huge outputs
# (Mbpp/255: 46 s and 11 GB in-process, and not a literal anyway); such tasks keep calling the
# reference inside the sandboxed test, one input at a time, as EvalPlus's per-call path does.
EXPECTED_MAX_CHARS = 8_000_000
EXPECTED_MEMORY_BYTES = 3 << 30
EXPECTED_TIMEOUT_S = 120
_expected_cache: dict[tuple[str, str], str | None] = {}


def expected_outputs(reference: str, entry_point: str, inputs: list) -> str | None:
    """repr() of the canonical solution's outputs, computed as EvalPlus's get_groundtruth does
    (dataset code, trusted) so the sandboxed test runs the reference once instead of once per
    check. Runs in a forked child under a memory and time budget, so a task whose outputs are
    huge cannot take the harness down; None (the test then calls the reference itself) when the
    budget is exceeded or an output's repr() does not read back as the same value. Cached per
    process."""
    key = (reference, repr(inputs))
    if key not in _expected_cache:
        _expected_cache[key] = _in_forked_child(lambda: _expected_repr(reference, entry_point, inputs))
    return _expected_cache[key]


def _expected_repr(reference: str, entry_point: str, inputs: list) -> str | None:
    ns: dict[str, Any] = {}
    exec(reference, ns)  # noqa: S102 - the dataset's canonical solution, as EvalPlus runs it
    parts, size = [], 2
    for a in inputs:
        out = ns[entry_point](*copy.deepcopy(list(a)))
        if plain.encoded_over(out, EXPECTED_MAX_CHARS - size):  # before building a repr of GBs
            return None
        parts.append(repr(out))
        size += len(parts[-1]) + 2
        if size > EXPECTED_MAX_CHARS:
            return None
    text = "[" + ", ".join(parts) + "]"
    try:
        same = repr(eval(text, {"inf": math.inf, "nan": math.nan})) == text  # noqa: S307 - our own repr
    except Exception:  # noqa: BLE001 - objects without a literal repr
        same = False
    return text if same else None


def _in_forked_child(fn: Callable[[], str | None]) -> str | None:
    """fn() in a fork with an address-space cap and an alarm; None when it fails or overruns."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no logging, no return to the caller's frames
        status = 1
        try:
            os.close(read_fd)
            vm = int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmSize:"))) * 1024
            resource.setrlimit(resource.RLIMIT_AS, (vm + EXPECTED_MEMORY_BYTES, vm + EXPECTED_MEMORY_BYTES))
            signal.alarm(EXPECTED_TIMEOUT_S)
            text = fn()
            with os.fdopen(write_fd, "w") as out:
                out.write("" if text is None else "=" + text)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    return data[1:] if status == 0 and data.startswith("=") else None


def mbpp_assert_test(tests: list[str], setup: str = "") -> str:
    """Original MBPP's assert list as the check(candidate) the sandbox calls (fusion data's
    MBPP pools); the asserts name the function directly."""
    body = "\n".join("    " + t.replace("\n", "\n    ") for t in tests) or "    pass"
    return (setup.strip() + "\n\n" if setup and setup.strip() else "") + f"def check(candidate):\n{body}\n"
