"""Hashed word and character n-gram TF-IDF features, computed in compiled code (numba).

sklearn's char analyzer builds every n-gram as a Python string (~1.2 ms per 3,000-character article); here a
whole batch becomes one array of code points and a numba kernel hashes, counts, weights and L2-normalises the
n-grams in one pass (~0.1 ms per article). Hashes are FNV-1a over code points with a splitmix64 finaliser: stable
across processes, platforms and Python versions (never Python's salted ``hash()``).

Text handling follows sklearn's TfidfVectorizer: lowercase, NFKD with combining marks removed (accent
stripping), words = maximal runs of 2+ ``\\w`` characters, ``char_wb`` n-grams inside space-padded
whitespace-separated words (or plain ``char`` n-grams across the whole whitespace-normalised text). Word and char
blocks are L2-normalised separately (each row has one unit-norm word part and one unit-norm char part, as the
hstack of two sklearn vectorizers had).
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

_BMP = 0x10000


def _jit(**options):
    """numba's njit with the on-disk cache (compiling costs seconds per process) where a cache dir is writable."""

    def decorate(fn):
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # "no locator available": read-only install and no writable cache dir
            return njit(**options)(fn)

    return decorate


def _table(predicate) -> np.ndarray:
    return np.array([predicate(chr(c)) for c in range(_BMP)], dtype=np.bool_)


# Code point classes of the Basic Multilingual Plane (code points above it: not word chars, not spaces, kept).
_WORD_CHAR = _table(lambda ch: ch.isalnum() or ch == "_")  # what re's \w matches
_SPACE = _table(str.isspace)
_COMBINING = _table(lambda ch: unicodedata.combining(ch) != 0)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_WORD_SEED = np.uint64(0x9E3779B97F4A7C15)  # word n-grams and char n-grams live in different hash families
_CHAR_SEED = np.uint64(0xD1B54A32D192ED03)


@_jit(inline="always")
def _finalise(h):
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@_jit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@_jit(inline="always")
def _column(table, bucket):
    """The column of hash bucket ``bucket`` (-1: not kept) in a bitmap + rank table (see rank_table)."""
    word = bucket >> np.uint64(6)
    bits = table[word, 0]
    bit = np.uint64(1) << (bucket & np.uint64(63))
    if bits & bit == np.uint64(0):
        return np.int64(-1)
    return np.int64(table[word, 1] + _popcount(bits & (bit - np.uint64(1))))


def rank_table(kept: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket -> column map of the kept buckets (sorted): per 64 buckets, a bitmap of the kept ones and the
    number kept before them. 1/16 of the size of a dense int32 map (0.8 MB instead of 12.6 MB at 2**20 +
    2**21 buckets), so the lookups done for every n-gram mostly hit the CPU cache instead of memory."""
    n_words = (n_buckets + 63) // 64
    kept = np.asarray(kept, dtype=np.int64)
    bits = np.zeros(n_words, dtype=np.uint64)
    np.bitwise_or.at(bits, kept >> 6, np.left_shift(np.uint64(1), (kept & 63).astype(np.uint64)))
    per_word = np.bincount(kept >> 6, minlength=n_words).astype(np.uint64)
    table = np.empty((n_words, 2), dtype=np.uint64)
    table[:, 0] = bits
    table[0, 1] = 0
    np.cumsum(per_word[:-1], out=table[1:, 1])
    return table


@_jit()
def _clean(codes, start, end, combining, space, buf):
    """Copy one document into ``buf``: combining marks dropped, whitespace runs -> one space, trimmed."""
    n = 0
    pending_space = False
    for i in range(start, end):
        c = codes[i]
        if c < 0x10000:
            if combining[c]:
                continue
            if space[c]:
                pending_space = n > 0
                continue
        if pending_space:
            buf[n] = 32
            n += 1
            pending_space = False
        buf[n] = c
        n += 1
    return n


@_jit()
def _word_grams(buf, n, word_char, word_max, mask_word, lookup, word_hashes, counts, touched, n_touched):
    """Words (maximal runs of 2+ word characters) hashed, then word 1..word_max-grams over their hashes."""
    n_words = 0
    i = 0
    while i < n:
        c = buf[i]
        if c < 0x10000 and word_char[c]:
            h = _FNV_OFFSET
            j = i
            while j < n and buf[j] < 0x10000 and word_char[buf[j]]:
                h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
                j += 1
            if j - i >= 2:
                word_hashes[n_words] = h
                n_words += 1
            i = j
        else:
            i += 1
    for size in range(1, word_max + 1):
        for w in range(n_words - size + 1):
            h = _WORD_SEED ^ np.uint64(size)
            for k in range(size):
                h = (h ^ word_hashes[w + k]) * _FNV_PRIME
            col = _column(lookup, _finalise(h) & mask_word)
            if col >= 0:
                if counts[col] == 0:
                    touched[n_touched] = col
                    n_touched += 1
                counts[col] += 1
    return n_touched


@_jit()
def _char_grams(buf, n, char_min, char_max, char_wb, char_base, mask_char, lookup, counts, touched, n_touched):
    """Character char_min..char_max-grams, inside space-padded words (``char_wb``) or across the text."""
    i = 0
    while i < n:
        if char_wb:  # one space-padded word: [i, j) plus a virtual space on each side
            if buf[i] == 32:
                i += 1
                continue
            j = i
            while j < n and buf[j] != 32:
                j += 1
            seg_start = i - 1
            seg_len = j - i + 2
            i = j
        else:  # the whole text
            seg_start = 0
            seg_len = n
            i = n
        for s in range(seg_len):
            h = _FNV_OFFSET ^ _CHAR_SEED
            for k in range(min(char_max, seg_len - s)):
                p = seg_start + s + k
                c = np.uint64(32) if (char_wb and (p < seg_start + 1 or p >= seg_start + seg_len - 1)) \
                    else np.uint64(buf[p])
                h = (h ^ c) * _FNV_PRIME
                size = k + 1
                # sklearn counts a segment shorter than char_min once, whole
                if size >= char_min or (s == 0 and size == seg_len):
                    col = _column(lookup, char_base + (_finalise(h) & mask_char))
                    if col >= 0:
                        if counts[col] == 0:
                            touched[n_touched] = col
                            n_touched += 1
                        counts[col] += 1
            if s + char_min >= seg_len:  # no full-size n-gram starts further right
                break
    return n_touched


@_jit()
def _write_row(touched, n_touched, counts, idf, n_word_cols, indices, values, pos):
    """Sublinear tf x idf of the document's columns at ``pos``, each block L2-normalised; counts reset."""
    sq_word = 0.0
    sq_char = 0.0
    for t in range(n_touched):
        col = touched[t]
        v = (1.0 + np.log(np.float64(counts[col]))) * idf[col]
        values[pos + t] = v
        indices[pos + t] = col
        counts[col] = 0
        if col < n_word_cols:
            sq_word += v * v
        else:
            sq_char += v * v
    inv_word = 1.0 / np.sqrt(sq_word) if sq_word > 0 else 0.0
    inv_char = 1.0 / np.sqrt(sq_char) if sq_char > 0 else 0.0
    for t in range(n_touched):
        values[pos + t] *= inv_word if indices[pos + t] < n_word_cols else inv_char


@_jit(nogil=True)
def _tfidf_kernel(codes, offsets, word_max, char_min, char_max, char_wb, bits_word, bits_char, lookup,
                  n_word_cols, idf, word_char, space, combining):
    """Return CSR (indptr, indices, values) of sublinear-tf x idf, each block L2-normalised per row.

    Buckets: word n-grams in [0, 2**bits_word), char n-grams in [2**bits_word, 2**bits_word + 2**bits_char);
    ``lookup`` (a rank_table) maps a bucket to its column (-1: dropped). Columns < n_word_cols belong to the
    word block. Runs without the GIL: the server's other threads go on while a batch is featurised.
    """
    n_docs = offsets.shape[0] - 1
    mask_word = np.uint64((1 << bits_word) - 1)
    mask_char = np.uint64((1 << bits_char) - 1)
    char_base = np.uint64(1 << bits_word)
    n_char_sizes = char_max - char_min + 1 if char_max > 0 else 0
    max_len = 0
    for d in range(n_docs):
        max_len = max(max_len, offsets[d + 1] - offsets[d])
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    capacity = max(1024, (offsets[n_docs] - offsets[0]) * 2)  # grown on demand
    indices = np.empty(capacity, dtype=np.int32)
    values = np.empty(capacity, dtype=np.float32)
    counts = np.zeros(idf.shape[0], dtype=np.int32)
    # a bound on one document's distinct n-grams (space-padded words add up to 2 positions per word)
    touched = np.empty((2 * max_len + 3) * n_char_sizes + (max_len + 1) * word_max + 1, dtype=np.int32)
    buf = np.empty(max_len + 2, dtype=np.uint32)
    word_hashes = np.empty(max_len // 2 + 2, dtype=np.uint64)
    pos = 0
    for d in range(n_docs):
        n = _clean(codes, offsets[d], offsets[d + 1], combining, space, buf)
        n_touched = _word_grams(buf, n, word_char, word_max, mask_word, lookup, word_hashes, counts, touched, 0)
        if n_char_sizes > 0:
            n_touched = _char_grams(buf, n, char_min, char_max, char_wb, char_base, mask_char, lookup, counts,
                                    touched, n_touched)
        if pos + n_touched > indices.shape[0]:
            capacity = max(2 * indices.shape[0], pos + n_touched)
            grown_indices = np.empty(capacity, dtype=np.int32)
            grown_indices[:pos] = indices[:pos]
            grown_values = np.empty(capacity, dtype=np.float32)
            grown_values[:pos] = values[:pos]
            indices, values = grown_indices, grown_values
        _write_row(touched, n_touched, counts, idf, n_word_cols, indices, values, pos)
        pos += n_touched
        indptr[d + 1] = pos
    return indptr, indices[:pos], values[:pos]


def encode_texts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Lowercase + NFKD each text; return all code points in one uint32 array and the document offsets."""
    prepped = [unicodedata.normalize("NFKD", (t or "").lower()) for t in texts]
    lengths = np.fromiter((len(p) for p in prepped), dtype=np.int64, count=len(prepped))
    offsets = np.zeros(len(prepped) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # surrogatepass: a lone surrogate (broken JSON escapes) stays one code unit, so offsets stay exact
    codes = np.frombuffer("".join(prepped).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return codes, offsets


# Featurisation threads: one per CPU this process may use (at most 4) unless set_featurise_threads says
# otherwise (the inference service passes its cpu_threads setting), each taking a contiguous chunk of at least
# MIN_CHUNK documents (below that, thread hand-off costs more than it saves).
MIN_CHUNK = 32
_THREADS: int | None = None
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def set_featurise_threads(threads: int | None) -> None:
    """Threads a batch is featurised on (1: always in the calling thread; None or 0: one per usable CPU)."""
    global _THREADS
    _THREADS = threads or None


def featurise_threads() -> int:
    if _THREADS:
        return _THREADS
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _chunks(n_docs: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) document ranges, one per thread used."""
    k = max(1, min(featurise_threads(), n_docs // MIN_CHUNK))
    bounds = [round(i * n_docs / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # threads start on demand: the cap only bounds what set_featurise_threads may ask for later
            _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ngrams")
        return _POOL


def _concatenate_csr(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CSR (indptr, indices, values) from row blocks in order."""
    shifts = np.cumsum([0] + [p[0][-1] for p in parts[:-1]])
    indptr = np.concatenate([parts[0][0][:1]] + [p[0][1:] + shift for p, shift in zip(parts, shifts, strict=True)])
    return indptr, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


@dataclass
class HashedTfidf:
    """Word 1..word_max-grams and char char_min..char_max-grams, hashed; fitted idf; float32 CSR out."""

    word_max: int = 2
    char_min: int = 3
    char_max: int = 5  # 0: word n-grams only
    char_wb: bool = True
    bits_word: int = 20
    bits_char: int = 21
    min_df: int = 2
    kept: np.ndarray | None = None  # sorted kept buckets (int64); the column of kept[i] is i
    idf: np.ndarray | None = None  # float32, one per column
    n_word_cols: int = 0

    def __post_init__(self) -> None:
        self._lookup: np.ndarray | None = None
        if self.kept is not None:
            self._build_lookup()

    @property
    def n_buckets(self) -> int:
        return (1 << self.bits_word) + (1 << self.bits_char)

    @property
    def n_features(self) -> int:
        return 0 if self.idf is None else int(self.idf.shape[0])

    def _build_lookup(self) -> None:
        self._lookup = rank_table(self.kept, self.n_buckets)

    def _kernel(self, texts: Sequence[str], lookup: np.ndarray, idf: np.ndarray, n_word_cols: int):
        codes, offsets = encode_texts(texts)
        return _tfidf_kernel(
            codes, offsets, int(self.word_max), int(self.char_min), int(self.char_max), bool(self.char_wb),
            int(self.bits_word), int(self.bits_char), lookup, int(n_word_cols), idf, _WORD_CHAR, _SPACE,
            _COMBINING)

    def _run(self, texts: Sequence[str], lookup: np.ndarray, idf: np.ndarray, n_word_cols: int):
        from scipy import sparse

        chunks = _chunks(len(texts))
        if len(chunks) == 1:
            indptr, indices, values = self._kernel(texts, lookup, idf, n_word_cols)
        else:
            # The kernel runs without the GIL: a batch's chunks are featurised on several cores at once
            # (the serving batcher runs one batch at a time per model, so this is what uses the second core).
            parts = list(_pool().map(lambda span: self._kernel(texts[span[0]:span[1]], lookup, idf, n_word_cols),
                                     chunks))
            indptr, indices, values = _concatenate_csr(parts)
        return sparse.csr_matrix((values, indices, indptr), shape=(len(texts), idf.shape[0]))

    def fit_transform(self, texts: Sequence[str]):
        """Learn which buckets to keep (document frequency >= min_df) and their smoothed idf."""
        n_docs = len(texts)
        identity = rank_table(np.arange(self.n_buckets, dtype=np.int64), self.n_buckets)
        raw = self._run(texts, identity, np.ones(self.n_buckets, dtype=np.float32), 1 << self.bits_word)
        df = np.bincount(raw.indices, minlength=self.n_buckets)
        min_df = self.min_df if n_docs >= 20 else 1
        self.kept = np.flatnonzero(df >= max(min_df, 1)).astype(np.int64)
        # sklearn's smooth idf: ln((1 + n) / (1 + df)) + 1
        self.idf = (np.log((1.0 + n_docs) / (1.0 + df[self.kept])) + 1.0).astype(np.float32)
        self.n_word_cols = int(np.searchsorted(self.kept, 1 << self.bits_word))
        self._build_lookup()
        return self.transform(texts)

    def transform(self, texts: Sequence[str]):
        if self._lookup is None or self.idf is None:
            raise RuntimeError("hashed n-gram featuriser is not fitted")
        return self._run(texts, self._lookup, self.idf, self.n_word_cols)

    # -- persistence: plain arrays + settings (no pickles) --------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        settings = np.array([self.word_max, self.char_min, self.char_max, int(self.char_wb), self.bits_word,
                             self.bits_char, self.min_df, self.n_word_cols], dtype=np.int64)
        return {"settings": settings, "kept": self.kept, "idf": self.idf}

    @classmethod
    def from_state(cls, state) -> HashedTfidf:
        s = [int(v) for v in state["settings"]]
        return cls(word_max=s[0], char_min=s[1], char_max=s[2], char_wb=bool(s[3]), bits_word=s[4],
                   bits_char=s[5], min_df=s[6], n_word_cols=s[7], kept=np.asarray(state["kept"], dtype=np.int64),
                   idf=np.asarray(state["idf"], dtype=np.float32))
