"""Plain values: the only thing that crosses from untrusted code to the harness.

Stdlib only: this file is also prepended to the sandbox bootstrap (core._BOOTSTRAP), so the
code inside the sandbox and the harness share one codec.

A plain value is built from exactly these builtin types (no subclasses): None, bool, int,
float, str, bytes, complex, list, tuple, dict, set, frozenset; collections.Counter, OrderedDict
and defaultdict are sent as dict (equal to them under ==). It travels as JSON where types
JSON cannot tell apart are tagged: {"$t": [...]} tuple, {"$d": [[k, v], ...]} dict (any
hashable key, insertion order kept), {"$s": [...]} set, {"$fs": [...]} frozenset,
{"$b": "hex"} bytes, {"$c": [re, im]} complex, {"$f": "nan" | "inf" | "-inf"} float, and
{"$o": "module.Type"} (decoded as an Opaque) for a program's result of any other type. A JSON
object is never a value of its own, so a tag cannot be confused with data.

A value whose encoding is over the transport cap travels as {"$h": sha256 hex} (decoded as a
Digest; `dumps_capped`): the SHA-256 of the value's canonical encoding (`digest`), computed
streaming, never the whole encoding at once. The canonical encoding is Python's repr for
None, bool, int, float (exact: repr round-trips), str, bytes, complex, and for lists and tuples
(in order); dicts (and the dict subclasses above) list their items sorted by the key's
encoding, sets and frozensets their elements sorted by encoding, so iteration order, which
follows the string-hash seed of each process, does not matter. It is type-strict like the JSON
form (1, 1.0 and True differ; list and tuple differ; set and frozenset differ): equal digests
mean equal values of equal types, a false "equal" only by a SHA-256 collision. A Digest equals
exactly the values with its digest, so a test comparing it with `==` gets the right answer and
any other use (indexing, set(), arithmetic for a float tolerance) fails as a test failure.
Why a program cannot forge one: it computes the digest of what it returned, inside its own
sandbox, and never sees the expected value or its digest (those exist only in trusted
processes: the reference's recording and the test's replay). To match, it must return a value
with the expected digest: the expected value, in practice.

The harness parses text produced by untrusted code only through `loads_bounded`: size checked
before parsing, nesting depth checked by a linear scan before `json.loads` (which recurses), and
`decode` refuses anything that is not the shape above. The result is fresh builtin objects, so
nothing the untrusted side defined (an always-equal `__eq__`, a lying `__hash__`) survives.
"""

import hashlib as _hashlib
import json as _json
import math as _math
import re as _re

MAX_DEPTH = 100
_STRINGS = _re.compile(r'"(?:[^"\\]|\\.)*"', _re.S)
_NOT_BRACKETS = _re.compile(r"[^\[\]{}]+")


# The stdlib's dict subclasses travel as dict (a Counter compares equal to the dict of its items,
# as a test comparing them would find); their class is not kept.
_DICT_LIKE = ("collections.Counter", "collections.OrderedDict", "collections.defaultdict")


def _qualname(t) -> str:
    return f"{getattr(t, '__module__', '')}.{getattr(t, '__qualname__', '')}"


class PlainValueError(ValueError):
    """The value is not plain, too deep, too large, or not valid encoded JSON."""


class NotPlainError(PlainValueError):
    """The value (or a part of it) is of a type outside the plain set."""


class Opaque:
    """A program's result that is not a plain value (a re.Match, an object of its own): only the
    type's name crosses, as {"$o": name}. It equals nothing but itself, so a test sees that
    something other than None came back (EvalPlus's not-None oracles) and any comparison with
    an expected value fails, as it should for a value the harness cannot inspect."""

    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<opaque {self.type_name}>"


def dumps_opaque(x):
    """The {"$o": type name} stand-in of a result that is not plain (calls mode only)."""
    t = type(x)
    return _json.dumps({"$o": f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', '?')}"[:200]})


def encode(x, depth=0):
    """A plain value as a JSON-able structure (see the module docstring); numpy scalars and
    arrays become their Python values (`.item()`, `.tolist()`), as a test comparing them would."""
    t = type(x)
    if depth > MAX_DEPTH:
        raise PlainValueError(f"nested deeper than {MAX_DEPTH}")
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        return x if _math.isfinite(x) else {"$f": repr(x)}
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"$t": [encode(v, depth + 1) for v in x]}
    if t is dict or _qualname(t) in _DICT_LIKE:
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]}
    if t is set or t is frozenset:
        return {"$s" if t is set else "$fs": [encode(v, depth + 1) for v in x]}
    if t is bytes:
        return {"$b": x.hex()}
    if t is complex:
        return {"$c": [encode(x.real, depth + 1), encode(x.imag, depth + 1)]}
    if getattr(t, "__module__", None) == "numpy":
        conv = getattr(x, "tolist", None) if hasattr(x, "shape") and x.shape != () else getattr(x, "item", None)
        if conv is not None:
            return encode(conv(), depth + 1)
    raise NotPlainError(f"not a plain value: {t.__module__}.{t.__qualname__}")


def dumps(x):
    return _json.dumps(encode(x), ensure_ascii=False, allow_nan=False)


_TAGS = {"$t", "$d", "$s", "$fs", "$b", "$c", "$f", "$o", "$h"}
_HEX = frozenset("0123456789abcdef")


def decode(j, depth=0):
    """The value an encoded structure stands for; PlainValueError for anything else."""
    if depth > MAX_DEPTH + 2:
        raise PlainValueError(f"nested deeper than {MAX_DEPTH}")
    t = type(j)
    if j is None or t is bool or t is int or t is str:
        return j
    if t is float:
        return j
    if t is list:
        return [decode(v, depth + 1) for v in j]
    if t is not dict or len(j) != 1:
        raise PlainValueError("malformed plain value")
    (tag, v), = j.items()
    if tag not in _TAGS:
        raise PlainValueError(f"unknown tag {tag!r}")
    if tag == "$f":
        if v not in ("nan", "inf", "-inf"):
            raise PlainValueError("malformed float")
        return float(v)
    if tag == "$b":
        if type(v) is not str:
            raise PlainValueError("malformed bytes")
        return bytes.fromhex(v)
    if tag == "$o":
        if type(v) is not str or len(v) > 200:
            raise PlainValueError("malformed opaque value")
        return Opaque(v)
    if tag == "$h":
        if type(v) is not str or len(v) != 64 or not _HEX.issuperset(v):
            raise PlainValueError("malformed digest")
        return Digest(v)
    if type(v) is not list:
        raise PlainValueError(f"malformed {tag}")
    items = [decode(e, depth + 1) for e in v]
    try:
        if tag == "$t":
            return tuple(items)
        if tag == "$s":
            return set(items)
        if tag == "$fs":
            return frozenset(items)
        if tag == "$c":
            re_, im = items
            if type(re_) is not float or type(im) is not float:
                raise PlainValueError("malformed complex")
            return complex(re_, im)
        # $d: a list of [key, value] pairs
        out = {}
        for pair in v:
            if type(pair) is not list or len(pair) != 2:
                raise PlainValueError("malformed dict")
        for k, val in items:
            out[k] = val
        return out
    except TypeError as e:  # unhashable set element or dict key
        raise PlainValueError(f"malformed {tag}: {e}") from None
    except ValueError as e:
        raise PlainValueError(f"malformed {tag}: {e}") from None


# ---- values over the transport cap: their digest -------------------------------------------
class Digest:
    """A result that was over the transport cap, as the SHA-256 of its canonical encoding (see
    the module docstring). Equal to a value exactly when that value has the same digest; not
    hashable, not iterable, no arithmetic: only `==` and `!=` can see it."""

    __slots__ = ("hex",)

    def __init__(self, hex):
        self.hex = hex

    def __eq__(self, other):
        if type(other) is Digest:
            return self.hex == other.hex
        try:
            return digest(other) == self.hex
        except (PlainValueError, ValueError, RecursionError):  # not plain: not what was returned
            return False

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self):
        return f"<result over the transport cap, sha256 {self.hex[:16]}...>"


_DIGEST_SCALARS = frozenset((type(None), bool, int, float, str, bytes, complex))


def digest(x):
    """SHA-256 hex of x's canonical encoding, streamed; NotPlainError / PlainValueError as
    encode() raises them."""
    h = _hashlib.sha256()
    _digest_feed(h.update, x, 0)
    return h.hexdigest()


def _digest_bytes(x, depth):
    parts = []
    _digest_feed(parts.append, x, depth)
    return b"".join(parts)


def _digest_feed(put, x, depth):
    t = type(x)
    if depth > MAX_DEPTH:
        raise PlainValueError(f"nested deeper than {MAX_DEPTH}")
    if t in _DIGEST_SCALARS:
        put(repr(x).encode("utf-8", "surrogatepass"))
    elif t is list or t is tuple:
        if _DIGEST_SCALARS.issuperset(map(type, x)):  # C speed; the same bytes as the loop below
            put(repr(x).encode("utf-8", "surrogatepass"))
            return
        put(b"[" if t is list else b"(")
        for i, v in enumerate(x):
            if i:
                put(b", ")
            _digest_feed(put, v, depth + 1)
        put(b"]" if t is list else (b",)" if len(x) == 1 else b")"))
    elif t is dict or _qualname(t) in _DICT_LIKE:
        items = sorted(((_digest_bytes(k, depth + 1), v) for k, v in dict.items(x)), key=lambda kv: kv[0])
        put(b"{")
        for i, (k, v) in enumerate(items):
            put(b", " + k + b": " if i else k + b": ")
            _digest_feed(put, v, depth + 1)
        put(b"}")
    elif t is set or t is frozenset:
        put((b"set{" if t is set else b"frozenset{") + b", ".join(sorted(_digest_bytes(v, depth + 1) for v in x))
            + b"}")
    elif getattr(t, "__module__", None) == "numpy" and (hasattr(x, "tolist") or hasattr(x, "item")):
        conv = x.tolist if hasattr(x, "shape") and x.shape != () else x.item  # as encode() converts
        _digest_feed(put, conv(), depth + 1)
    else:
        raise NotPlainError(f"not a plain value: {t.__module__}.{t.__qualname__}")


def encoded_over(x, max_chars):
    """True when dumps(x), and repr(x) too, is surely longer than max_chars, found by adding
    up a lower bound of its length (every value at least 1 character, a string its length + 2,
    containers their brackets and separators) only until it passes max_chars: cheap even for a
    huge value."""
    total = 0
    stack = [iter((x,))]
    while stack:
        v = next(stack[-1], stack)
        if v is stack:
            stack.pop()
            continue
        t = type(v)
        if t is str:
            total += len(v) + 2
        elif t is bytes:
            total += len(v) + 3
        elif t in (list, tuple, set, frozenset):
            total += 1 + max(len(v), 1)
            stack.append(iter(v))
        elif t is dict or _qualname(t) in _DICT_LIKE:
            total += 1 + 3 * len(v)
            stack.append(_flat_items(v))
        else:
            total += 1
        if total > max_chars:
            return True
    return False


def _flat_items(d):
    for k, v in dict.items(d):
        yield k
        yield v


def dumps_capped(x, max_chars):
    """dumps(x), or {"$h": digest(x)} when that text would be over max_chars characters (the
    encoding is never built for a value that is surely over the cap)."""
    if not encoded_over(x, max_chars):
        text = dumps(x)
        if len(text) <= max_chars:
            return text
    return _json.dumps({"$h": digest(x)})


def is_digest(text):
    """Whether encoded text is a digest token (as dumps_capped writes it, or canonical())."""
    return text.startswith(('{"$h": "', '{"$h":"'))


def json_depth(text):
    """Deepest nesting of brackets in JSON text, found without recursion (strings skipped)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def loads_bounded(text, max_chars=1 << 20, max_depth=2 * MAX_DEPTH + 10):
    """json.loads for text written by untrusted code: size and depth checked first."""
    if not isinstance(text, str):
        raise PlainValueError(f"expected JSON text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise PlainValueError(f"{len(text)} characters of JSON, over the {max_chars} cap")
    if json_depth(text) > max_depth:
        raise PlainValueError(f"JSON nested deeper than {max_depth}")
    try:
        return _json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PlainValueError(f"invalid JSON: {str(e)[:200]}") from None


def loads(text, max_chars=1 << 20):
    """A plain value from text written by untrusted code (bounded parse, strict decode)."""
    try:
        return decode(loads_bounded(text, max_chars))
    except RecursionError:
        raise PlainValueError("nested too deeply") from None


def canonical(text, max_chars=1 << 20):
    """The encoded value re-serialised by the harness: equal strings mean equal values of equal
    types (1, 1.0 and True differ), which `==` on the values would not guarantee."""
    return _json.dumps(loads_bounded(text, max_chars), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
