"""Text normalisation, near-duplicate measures and a compact MinHash-LSH index.

Three tools that ``validate`` uses:

- ``normalize_text`` cleans a text for output (Unicode NFC, no control or zero-width characters,
  single spaces, at most one blank line); ``dedup_key`` reduces it further for comparison
  (case-folded, punctuation dropped), so "What's X?" and "whats x" share a key.
- ``near_identical`` compares two texts of one record (word sets, then word bigrams, so word
  order counts).
- ``minhash`` + ``LshIndex`` find near-duplicate queries across a whole file. Signatures of a
  batch of texts are computed with numpy in one go (byte 5-grams, multiply-shift hashing), and
  the index stores only fixed-size numbers per text (32-bit band keys with their slots, a
  16-bit signature, a line number: about 210 bytes), never the texts.

    >>> dedup_key("  What's  the LATIN name of sodium? ")
    'what s the latin name of sodium'
    >>> near_identical(dedup_key("The sun is a star."), dedup_key("the sun is a star"), 0.9)
    True
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_BLANKS = re.compile(r"\n{3,}")
_NON_WORD = re.compile(r"[\W_]+")
# ASCII fast path for dedup keys: letters and digits kept (lower-cased), everything else a space
_ASCII_KEY = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))


def normalize_text(text: str) -> str:
    """NFC, control and zero-width characters removed, whitespace collapsed, stripped.

    >>> normalize_text("  Caf\\u0065\\u0301\\u200b  au\\tlait \\r\\n\\n\\n\\nfin ")
    'Café au lait\\n\\nfin'
    """
    if text.isascii():
        if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
            return text  # the common case: nothing to do
    else:
        text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    lines = [line if line.isprintable() else " ".join(_CONTROL.sub("", line).split()) for line in lines]
    text = "\n".join(lines).strip()
    return _BLANKS.sub("\n\n", text) if "\n\n\n" in text else text


def dedup_key(text: str) -> str:
    """The comparison form of a text: NFKC, case-folded, words only, single spaces.

    >>> dedup_key("Straße, STRASSE_2!") == dedup_key("strasse strasse 2")
    True
    """
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_KEY).decode("ascii").split())
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def key_hash(key: str) -> int:
    """A 63-bit hash of a dedup key (xxh3 when installed, else blake2b; stable across runs).

    >>> key_hash("abc") == key_hash("abc") != key_hash("abd")
    True
    """
    return _hash64(key.encode("utf-8")) >> 1


def _blake64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


_hash64: Callable[[bytes], int]
try:
    from xxhash import xxh3_64_intdigest as _hash64
except ImportError:  # pragma: no cover
    _hash64 = _blake64


def shingles(key: str) -> frozenset[tuple[str, ...]]:
    """Word bigrams of a dedup key (single words when it has only one).

    >>> sorted(shingles("a b c"))
    [('a', 'b'), ('b', 'c')]
    """
    words = key.split()
    if len(words) < 2:
        return frozenset((w,) for w in words)
    return frozenset(pairwise(words))


class WordSets(dict[str, set[str]]):
    """A lazy cache: key -> its set of words, computed on first use."""

    def __missing__(self, key: str) -> set[str]:
        value = self[key] = set(key.split())
        return value


def near_identical(a: str, b: str, threshold: float, words: WordSets | None = None) -> bool:
    """Are two dedup keys the same, or of lengths within ``threshold`` of each other with word
    sets AND word-bigram sets both at Jaccard >= threshold? (Cheap tests first; bigrams keep
    word order.)

    >>> near_identical("the earth orbits the sun", "the sun orbits the earth", 0.9)
    False
    >>> near_identical("a b c d e f g h i j k", "a b c d e f g h i j k l", 0.9)
    True
    """
    if not a or not b:
        return False
    if a == b:
        return True
    if min(len(a), len(b)) < threshold * max(len(a), len(b)):
        return False  # near-identical texts have near-equal lengths
    wa, wb = (words[a], words[b]) if words is not None else (set(a.split()), set(b.split()))
    inter = len(wa & wb)
    if inter < threshold * (len(wa) + len(wb) - inter):
        return False
    return shingle_jaccard(a, b) >= threshold


def shingle_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the word-bigram sets of two dedup keys.

    >>> round(shingle_jaccard("the earth orbits the sun", "the sun orbits the earth"), 2)
    0.6
    """
    sa, sb = shingles(a), shingles(b)
    if not sa or not sb:
        return 1.0 if sa == sb else 0.0
    return len(sa & sb) / len(sa | sb)


# ----------------------------------------------------------------------------- MinHash
_SHINGLE_BYTES = 5


class MinHasher:
    """Vectorised MinHash over byte 5-grams of dedup keys, ``num_perm`` hash functions.

    Hash functions are multiply-shift on 64 bits (a odd), taking the high 32 bits; the
    coefficients come from sha256 of ``seed``, so signatures are the same in every run.
    """

    def __init__(self, num_perm: int = 64, seed: int = 1) -> None:
        raw = hashlib.sha256(f"mghkit-minhash-{seed}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(raw[:8], "little"))
        self.num_perm = num_perm
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signatures(self, keys: Sequence[str]) -> np.ndarray:
        """uint32 array [len(keys), num_perm]; texts shorter than 5 bytes are padded."""
        n = len(keys)
        if n == 0:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        k = _SHINGLE_BYTES
        blobs = [s.encode("utf-8").ljust(k) for s in keys]
        lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=n)
        data = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.uint64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        # pack each 5-byte window into one uint64 (windows crossing a boundary are dropped below)
        total = len(data) - k + 1
        packed = np.zeros(total, dtype=np.uint64)
        for j in range(k):
            packed |= data[j : j + total] << np.uint64(8 * j)
        n_windows = lengths - k + 1
        owner = np.repeat(np.arange(n), lengths)[:total]
        offset = np.arange(total) - starts[owner]
        packed = packed[offset < n_windows[owner]]
        seg_starts = np.concatenate(([0], np.cumsum(n_windows)[:-1]))
        out = np.empty((n, self.num_perm), dtype=np.uint32)
        tmp = np.empty_like(packed)
        with np.errstate(over="ignore"):
            for j in range(self.num_perm):  # one column at a time stays in cache
                np.multiply(packed, self.a[j], out=tmp)
                tmp += self.b[j]
                tmp >>= np.uint64(32)
                out[:, j] = np.minimum.reduceat(tmp, seg_starts)
        return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm whose S-curve midpoint (1/b)^(1/r) sits
    just below ``threshold``, favouring recall (candidates are verified afterwards).

    >>> lsh_params(0.8, 64)
    (10, 6)
    """
    best = (1, num_perm)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands and (1 / bands) ** (1 / rows) <= threshold - 0.1:
            best = (bands, rows)
    return best


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys of MinHash signatures: uint64 [n, bands], one hash of each band's ``rows``
    values with the band number mixed in (so equal values in different bands differ)."""
    n = len(sigs)
    cols = sigs[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    h = np.arange(1, bands + 1, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for j in range(rows):
            h = (h ^ cols[:, :, j]) * np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(29)
    return np.broadcast_to(h, (n, bands)).copy()


class SortedKeys:
    """A growing multiset of uint64 keys with an int payload; batch lookups by binary search.

    Keys arrive per batch and are inserted into one sorted array (linear per batch), so memory
    is 12 bytes per key and lookups are vectorised.
    """

    def __init__(self, key_dtype: type[np.unsignedinteger] = np.uint64) -> None:
        self.keys = np.zeros(0, dtype=key_dtype)
        self.values = np.zeros(0, dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if len(keys) == 0:
            return
        order = np.argsort(keys, kind="stable")
        new_keys, new_values = keys[order].astype(self.keys.dtype), values[order].astype(np.uint32)
        at = np.searchsorted(self.keys, new_keys, side="right")  # after equal keys: first stays first
        self.keys = np.insert(self.keys, at, new_keys)
        self.values = np.insert(self.values, at, new_values)

    def first(self, keys: np.ndarray) -> np.ndarray:
        """The payload of the first stored entry for each key, or -1 when absent."""
        pos = np.searchsorted(self.keys, keys)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == keys[found]
        out = np.full(len(keys), -1, dtype=np.int64)
        out[found] = self.values[pos[found]]
        return out

    def all(self, key: np.uint64) -> np.ndarray:
        """Every payload stored under ``key``."""
        lo = np.searchsorted(self.keys, key, side="left")
        hi = np.searchsorted(self.keys, key, side="right")
        return self.values[lo:hi]


class LshIndex:
    """Near-duplicate lookup for MinHash signatures: banded LSH, candidates verified on a
    stored 16-bit signature (estimated Jaccard >= threshold). Stores ids (e.g. line numbers).
    """

    def __init__(self, threshold: float, num_perm: int = 64) -> None:
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._buckets = SortedKeys(np.uint32)  # low 32 bits of each band key -> slot (verified anyway)
        self._sigs = np.zeros((1024, num_perm), dtype=np.uint16)
        self._ids = np.zeros(1024, dtype=np.uint32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """uint64 array [n, bands]: one hash per band, the band number mixed in."""
        return band_keys(sigs, self.bands, self.rows)

    def query(self, sig: np.ndarray, keys: np.ndarray) -> tuple[int, float] | None:
        """The stored (id, estimated Jaccard) most similar to ``sig`` if it reaches the
        threshold; ``keys`` are the signature's band keys."""
        ids, sims = self.query_many(sig[None, :], keys[None, :])
        return (int(ids[0]), float(sims[0])) if ids[0] >= 0 else None

    def query_many(self, sigs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``query`` for a batch at once: (ids int64 [n], -1 where nothing reaches the threshold;
        estimated Jaccard float [n]). Ties go to the earliest stored entry, as in ``query``."""
        n = len(sigs)
        ids, best = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.float64)
        if n == 0 or self._n == 0:
            return ids, best
        flat = keys.reshape(-1).astype(np.uint32)
        lo = np.searchsorted(self._buckets.keys, flat, side="left")
        counts = np.searchsorted(self._buckets.keys, flat, side="right") - lo
        total = int(counts.sum())
        if total == 0:
            return ids, best
        # every (row, stored slot) pair that shares a band key, then each row's best slot
        row = np.repeat(np.arange(len(flat)) // keys.shape[1], counts)
        starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        slot = self._buckets.values[starts + np.arange(total)]
        pair = np.unique(row.astype(np.int64) * (self._n + 1) + slot)  # distinct pairs, sorted by row, slot
        row, slot = pair // (self._n + 1), pair % (self._n + 1)
        sims = (self._sigs[slot] == sigs.astype(np.uint16)[row]).mean(axis=1)
        order = np.lexsort((slot, -sims, row))  # per row: highest similarity, then earliest slot
        first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
        hit = sims[first] >= self.threshold
        ids[row[first][hit]] = self._ids[slot[first][hit]]
        best[row[first]] = sims[first]
        return ids, best

    def add(self, sigs: np.ndarray, keys: np.ndarray, ids: Sequence[int]) -> None:
        """Store a batch: signatures [n, num_perm], their band keys [n, bands], ids [n]."""
        n = len(ids)
        if n == 0:
            return
        if self._n + n > len(self._ids):  # grow by a quarter, not double: memory tracks the count
            size = len(self._ids) + max(n, len(self._ids) // 4)
            # in place (realloc, which can remap large blocks): no second copy alive while growing
            self._sigs.resize((size, self._sigs.shape[1]), refcheck=False)
            self._ids.resize(size, refcheck=False)
        slots = np.arange(self._n, self._n + n, dtype=np.uint32)
        self._sigs[slots] = sigs.astype(np.uint16)
        self._ids[slots] = np.asarray(ids, dtype=np.uint32)
        self._buckets.add(keys.reshape(-1).astype(np.uint32), np.repeat(slots, self.bands))
        self._n += n

    def candidates_exist(self, keys: np.ndarray) -> np.ndarray:
        """Boolean [n]: does any band key of each row hit the index (cheap pre-filter)."""
        if len(self._buckets) == 0:
            return np.zeros(len(keys), dtype=bool)
        hit = self._buckets.first(keys.reshape(-1).astype(np.uint32)) >= 0
        return np.asarray(hit.reshape(keys.shape).any(axis=1))
