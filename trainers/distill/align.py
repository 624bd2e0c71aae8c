"""Vocabulary and token alignment between a source tokenizer and the pivot's (FUSION_METHODS.md §1(b)).

Every comparison is made on DECODED token text, so a byte-level BPE vocabulary (SmolLM2: "Ġhello",
UTF-8 bytes as proxy characters) and a SentencePiece one (Gemma: "▁hello", "<0xE4>" byte pieces)
meet on the same strings: " hello" and " hello". Which form a vocabulary has is read from the
vocabulary itself (the 256 byte-proxy characters; the share of "▁"-prefixed pieces), never from
the tokenizer's class name, which transformers 5 changed.

  exact_map        source id -> pivot id with identical decoded text
  mined_map        FuseLLM's MinED: nearest pivot token by edit distance, only for the ids asked
                   (the ids that occur in the stored top-k), rapidfuzz, cached on disk; ties broken
                   by the distance of the UTF-8 bytes (ours: FuseLLM takes the first)
  statistics_map   FuseChat's "MS": among pivot tokens DTW-aligned to a source token over the
                   corpus, the lowest edit distance × (0.1 if one contains the other) × sigmoid(count)
  dtw              FuseLLM's dynamic time warping of two token streams of one text
  align_row        re-indexes a source's top-k to pivot positions, with FuseLLM's rules
                   (`transform_step_logits`: hard = exact, soft = through a vocabulary map; one-hot
                   on the pivot token where positions do not align one-to-one) or FuseChat's
                   (n-to-1 and 1-to-n suffix/prefix rules before the one-hot; `fusechat_choices`)
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SENTENCEPIECE_SPACE = "▁"
BYTE_LEVEL_SPACE = "Ġ"
_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _hex_bytes(err: UnicodeDecodeError):
    # undecodable bytes read as SentencePiece byte pieces, so partial UTF-8 tokens of both
    # vocabularies compare as the same string ("<0xE4>")
    return "".join(f"<0x{b:02X}>" for b in err.object[err.start:err.end]), err.end


codecs.register_error("harness_hexbytes", _hex_bytes)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_CHARS = _bytes_to_unicode()
_CHAR_BYTES = {c: b for b, c in _BYTE_CHARS.items()}


@dataclass(frozen=True)
class VocabForm:
    byte_level: bool  # pieces are GPT-2 byte-proxy strings
    marker: str | None  # the piece prefix that stands for a space ("Ġ", "▁", or None)


def detect_vocab_form(pieces: list[str]) -> VocabForm:
    """SentencePiece if "▁" starts more pieces than "Ġ" (and at least 5%); otherwise byte-level if
    "Ġ" starts at least 5% or (nearly) all 256 byte-proxy characters are single pieces (SmolLM2
    lacks some of them). A large SentencePiece vocabulary
    (Gemma's 262k) also holds every byte-proxy character, so the marker count decides first.
    pieces[i] is the raw piece of id i."""
    sp = sum(p.startswith(SENTENCEPIECE_SPACE) for p in pieces if p)
    bl = sum(p.startswith(BYTE_LEVEL_SPACE) for p in pieces if p)
    if sp > bl and sp >= 0.05 * max(1, len(pieces)):
        return VocabForm(False, SENTENCEPIECE_SPACE)
    present = set(pieces)
    if bl >= 0.05 * max(1, len(pieces)) or sum(c in present for c in _BYTE_CHARS.values()) >= 250:
        return VocabForm(True, BYTE_LEVEL_SPACE)
    return VocabForm(False, None)


def piece_text(piece: str, form: VocabForm) -> str:
    """The text a piece stands for; undecodable bytes as "<0xNN>"."""
    if form.byte_level:
        if all(c in _CHAR_BYTES for c in piece):
            return bytes(_CHAR_BYTES[c] for c in piece).decode("utf-8", errors="harness_hexbytes")
        return piece  # special tokens such as <|im_start|>
    m = _SP_BYTE.match(piece)
    if m:
        b = int(m.group(1), 16)
        return chr(b) if b < 0x80 else piece.upper().replace("0X", "0x")
    return piece.replace(SENTENCEPIECE_SPACE, " ") if form.marker else piece


def vocab_texts(tokenizer) -> list[str]:
    """Decoded text of every id of a transformers tokenizer (index = id)."""
    n = len(tokenizer)
    pieces = [p if p is not None else "" for p in tokenizer.convert_ids_to_tokens(list(range(n)))]
    form = detect_vocab_form(pieces)
    return [piece_text(p, form) for p in pieces]


def text_bytes(text: str) -> str:
    """The UTF-8 bytes of a decoded token text as a latin-1 string ("<0xNN>" pieces become their byte)."""
    parts = re.split(r"(<0x[0-9A-F]{2}>)", text)
    raw = b"".join(bytes([int(x[3:5], 16)]) if _SP_BYTE.match(x) else x.encode("utf-8", "surrogatepass")
                   for x in parts if x)
    return raw.decode("latin-1")


def texts_hash(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def exact_map(source_texts: list[str], pivot_texts: list[str]) -> dict[int, int]:
    """Source id -> the lowest pivot id with the same decoded text."""
    first: dict[str, int] = {}
    for i, t in enumerate(pivot_texts):
        first.setdefault(t, i)
    return {i: first[t] for i, t in enumerate(source_texts) if t in first}


class MapCache:
    """A JSON file per (source vocab, pivot vocab, kind) holding the ids mapped so far; new ids are
    computed and the file replaced atomically, so a map is never computed twice."""

    def __init__(self, root: Path, source_texts: list[str], pivot_texts: list[str], kind: str):
        self.path = Path(root) / f"{kind}-{texts_hash(source_texts)}-{texts_hash(pivot_texts)}.json"

    def load(self) -> dict[int, int]:
        try:
            return {int(k): v for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def save(self, mapping: dict[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in sorted(mapping.items())}))
        tmp.replace(self.path)


def mined_map(ids, source_texts: list[str], pivot_texts: list[str], *, cache_dir: Path | None = None,
              chunk: int = 256) -> dict[int, int]:
    """FuseLLM's MinED for the source `ids` only: exact text match first, otherwise the pivot id
    with the smallest Levenshtein distance (ties: the lowest id, as FuseLLM's argmin)."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    cache = MapCache(cache_dir, source_texts, pivot_texts, "mined") if cache_dir else None
    mapping = cache.load() if cache else {}
    exact = {t: i for i, t in reversed(list(enumerate(pivot_texts)))}
    todo = []
    for i in sorted(set(int(x) for x in ids) - set(mapping)):
        hit = exact.get(source_texts[i])
        if hit is None:
            todo.append(i)
        else:
            mapping[i] = hit
    pivot_bytes = [text_bytes(t) for t in pivot_texts] if todo else []
    for s in range(0, len(todo), chunk):
        part = todo[s:s + chunk]
        dist = cdist([source_texts[i] for i in part], pivot_texts, scorer=Levenshtein.distance,
                     dtype=np.int64, workers=-1)
        # ties on the text distance (a CJK pair against every 1-character token) go to the
        # smallest UTF-8 byte distance, then to the lowest id
        tie = cdist([text_bytes(source_texts[i]) for i in part], pivot_bytes, scorer=Levenshtein.distance,
                    dtype=np.int64, workers=-1)
        mapping.update(zip(part, (dist * 4096 + np.minimum(tie, 4095)).argmin(axis=1).tolist()))
    if cache and todo:
        cache.save(mapping)
    return mapping


def _cost_text(t: str) -> str:
    return t.replace(" ", "")  # FuseLLM strips the space markers before the edit distance


def dtw(a: list[str], b: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """FuseLLM's `dtw` (others.py l.318) on decoded texts: cost = edit distance without spaces;
    D[i,j] = c[i,j] + min(D[i-1,j], D[i,j-1], D[i-1,j-1]); the backtrack prefers diagonal, then
    up, then left. Filled by anti-diagonals in numpy. Returns (a_to_b, b_to_a): for every
    position the aligned positions of the other stream, ascending."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return [[] for _ in a], [[] for _ in b]
    cost = cdist([_cost_text(x) for x in a], [_cost_text(y) for y in b], scorer=Levenshtein.distance,
                 dtype=np.int32, workers=-1).astype(np.float64)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for k in range(n + m - 1):
        i = np.arange(max(0, k - m + 1), min(k, n - 1) + 1)
        j = k - i
        d[i + 1, j + 1] = cost[i, j] + np.minimum(np.minimum(d[i, j + 1], d[i + 1, j]), d[i, j])
    return _backtrack(d[1:, 1:])


def _backtrack(mat: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    i, j = mat.shape[0] - 1, mat.shape[1] - 1
    a_to_b: list[list[int]] = [[] for _ in range(mat.shape[0])]
    b_to_a: list[list[int]] = [[] for _ in range(mat.shape[1])]
    while i > 0 or j > 0:
        a_to_b[i].append(j)
        b_to_a[j].append(i)
        diag = mat[i - 1, j - 1] if i > 0 and j > 0 else math.inf
        up = mat[i - 1, j] if i > 0 else math.inf
        left = mat[i, j - 1] if j > 0 else math.inf
        move = int(np.argmin([diag, up, left]))
        i, j = (i - 1, j - 1) if move == 0 else (i - 1, j) if move == 1 else (i, j - 1)
    a_to_b[0].append(0)
    b_to_a[0].append(0)
    return [sorted(x) for x in a_to_b], [sorted(x) for x in b_to_a]


def co_alignment_counts(rows, source_texts: list[str], pivot_texts: list[str]) -> dict[int, Counter]:
    """FuseChat stage 1: over (pivot_token_ids, source_token_ids) rows of the same texts, count how
    often each source id is DTW-aligned one-to-one with each pivot id. -> {source id: Counter}."""
    counts: dict[int, Counter] = defaultdict(Counter)
    for piv, src in rows:
        piv_to_src, _ = dtw([pivot_texts[t] for t in piv], [source_texts[t] for t in src])
        for i, js in enumerate(piv_to_src):
            if len(js) == 1:
                counts[src[js[0]]][piv[i]] += 1
    return counts


def statistics_map(counts: dict[int, Counter], source_texts: list[str], pivot_texts: list[str]) -> dict[int, int]:
    """FuseChat's statistics-based map (align_token_and_vocab.py l.139-175): for each source id, the
    co-aligned pivot id minimising edit distance × w × sigmoid(count), w = 0.1 when one string
    contains the other. sigmoid(count) >= 0.73 raises the cost of frequent pairs; that is what the
    authors' code does and is kept (docs/fusion.md)."""
    from rapidfuzz.distance import Levenshtein

    out = {}
    for s, cands in counts.items():
        a = _cost_text(source_texts[s])
        best, best_cost = None, math.inf
        for p, c in sorted(cands.items()):
            b = _cost_text(pivot_texts[p])
            if not a or not b:
                a2, b2 = source_texts[s], pivot_texts[p]
            else:
                a2, b2 = a, b
            w = 0.1 if (a2 in b2 or b2 in a2) else 1.0
            cost = Levenshtein.distance(a2, b2) * w / (1.0 + math.exp(-c))
            if cost < best_cost:
                best, best_cost = p, cost
        out[s] = best
    return out


@dataclass
class AlignedRow:
    """A source's top-k re-indexed to the pivot's positions and vocabulary.
    ids (T, K') int32 pivot ids, -1 padding; logprobs (T, K') float32 (the source's log-probs;
    0.0 for a one-hot). K' = max(K, 1)."""

    ids: np.ndarray
    logprobs: np.ndarray
    one_to_one: int  # positions that took a source distribution (FuseLLM: one-to-one matching tokens)
    one_hot: int  # positions given the one-hot fallback
    empty: int  # taken positions none of whose top-k ids exist in the pivot vocabulary (the pivot's own fill in)

    @property
    def coverage(self) -> float:
        return self.one_to_one / max(1, len(self.ids))


ONE_HOT, EMPTY = -1, -2  # per pivot position: the source position to take, or one of these
RULES = ("fusellm", "fusechat")


def fusellm_choices(piv_to_src: list[list[int]], pivot_tokens: list[int], source_tokens: list[int],
                    pivot_texts: list[str], source_texts: list[str], vocab_map: dict[int, int],
                    soft: bool) -> list[int]:
    """FuseLLM's `transform_step_logits`: a pivot position aligned to exactly one source token
    that matches (same text, or `soft` and vocab_map[source token] == pivot token) takes that
    position; every other position is ONE_HOT."""
    out = []
    for i, js in enumerate(piv_to_src):
        p = pivot_tokens[i]
        s = source_tokens[js[0]] if len(js) == 1 else None
        match = s is not None and (source_texts[s] == pivot_texts[p] or (soft and vocab_map.get(s) == p))
        out.append(js[0] if match else ONE_HOT)
    return out


def _prefix_pieces(s: str, pieces: list[str]) -> list[int]:
    """FuseChat's `find_map_idx`: greedily consume `s` by the pieces that are its prefix, in order;
    the indices used, or [] unless all of `s` was consumed."""
    used = []
    for k, piece in enumerate(pieces):
        if s.startswith(piece):
            used.append(k)
            s = s[len(piece):]
    return used if not s else []


def _fusechat_token_choice(base: str, blend: list[str], js: list[int]) -> int:
    """FuseChat's default rule for one pivot token (decoded text `base`) DTW-aligned with the source
    tokens js (texts `blend`): the source token whose END meets the pivot token's end, or EMPTY /
    ONE_HOT (align_token_and_vocab.py `transform_step_logits`, align_type default with
    --use_token_alignment_matrix, l.284-365)."""
    if len(js) == 1:  # 1-1 or n-1: learn the last token
        return js[0] if blend[0].endswith(base) or base.endswith(blend[0]) else ONE_HOT
    base_s, parts = _cost_text(base), [_cost_text(t) for t in blend]  # markers stripped, as upstream
    for j, t in zip(js, parts):
        if base_s.endswith(t) or t.endswith(base_s):  # "xxgo" vs [xx, yygo, ...]
            return j
    used = _prefix_pieces(base_s, parts)
    whole = "".join(parts)
    if used or whole.endswith(base_s) or base_s.endswith(whole):
        # 1-n: the pivot token is the concatenation of source pieces -> the last piece; else an
        # empty entry (upstream appends nothing; its collator then copies the pivot distribution)
        return js[used[-1]] if used else EMPTY
    return ONE_HOT


def fusechat_choices(piv_to_src: list[list[int]], pivot_row_texts: list[str], source_row_texts: list[str]) -> list[int]:
    """FuseChat's per-position rules moved to this store's convention.

    Upstream's distribution at position i is the one AFTER token i (predicting i+1); the rules
    pick for pivot token i the source token j whose text ends where token i ends, so the two
    next-token distributions follow the same text. Here the distribution at position t predicts
    token t, so pivot position i+1 takes source position j+1. Position 0 takes source position 0:
    both predict the first response token right after the prompt. A choice j that is the source's
    last token has no following position here: ONE_HOT (upstream's padding position)."""
    m = len(source_row_texts)
    if not m:
        return [ONE_HOT] * len(piv_to_src)
    out = [0]
    for i, js in enumerate(piv_to_src[:-1]):
        c = _fusechat_token_choice(pivot_row_texts[i], [source_row_texts[j] for j in js], js)
        out.append(c + 1 if c >= 0 and c + 1 < m else (ONE_HOT if c >= 0 else c))
    return out[:len(piv_to_src)]


def align_row(pivot_tokens: list[int], source_tokens: list[int], source_top_ids: np.ndarray,
              source_top_logprobs: np.ndarray, pivot_texts: list[str], source_texts: list[str], *,
              vocab_map: dict[int, int], soft: bool = False, rules: str = "fusellm") -> AlignedRow:
    """Re-index a source's top-k to the pivot's positions on one row. The stored top-k at position t
    is the distribution that predicts token t (TextScore convention). `rules` picks which pivot
    positions take which source position: "fusellm" (`fusellm_choices`; hard mode should pass the
    exact map) or "fusechat" (`fusechat_choices`: many-to-one and one-to-many rules). A taken
    position gets the source's top-k, ids re-mapped into the pivot vocabulary (`vocab_map`, first
    occurrence kept); ONE_HOT positions a one-hot on the pivot's own token; EMPTY ones no entry."""
    piv_row = [pivot_texts[t] for t in pivot_tokens]
    src_row = [source_texts[t] for t in source_tokens]
    piv_to_src, _ = dtw(piv_row, src_row)
    if rules == "fusechat":
        choice = fusechat_choices(piv_to_src, piv_row, src_row)
    elif rules == "fusellm":
        choice = fusellm_choices(piv_to_src, pivot_tokens, source_tokens, pivot_texts, source_texts, vocab_map, soft)
    else:
        raise ValueError(f"unknown alignment rules {rules!r}; expected one of {RULES}")
    k = max(1, source_top_ids.shape[1] if source_top_ids.ndim == 2 else 1)
    ids = np.full((len(pivot_tokens), k), -1, dtype=np.int32)
    lps = np.zeros((len(pivot_tokens), k), dtype=np.float32)
    taken = empty = 0
    for i, j in enumerate(choice):
        if j == ONE_HOT:
            ids[i, 0] = pivot_tokens[i]
            continue
        taken += 1
        seen: list[int] = []
        for sid, lp in zip(source_top_ids[j].tolist() if j >= 0 else [], source_top_logprobs[j].tolist() if j >= 0 else []):
            q = vocab_map.get(sid)
            if q is not None and q not in seen:
                ids[i, len(seen)], lps[i, len(seen)] = q, lp
                seen.append(q)
        empty += not seen
    return AlignedRow(ids, lps, taken, choice.count(ONE_HOT), empty)


def warn_low_coverage(name: str, aligned: int, total: int, threshold: float = 0.5) -> float:
    """Log a warning with the figure when fewer than `threshold` of the pivot positions aligned."""
    cov = aligned / max(1, total)
    if total and cov < threshold:
        log.warning("alignment of %s: only %.1f%% of %d pivot positions align one-to-one (threshold %.0f%%); "
                    "the rest train on one-hot pivot targets", name, 100 * cov, total, 100 * threshold)
    return cov
