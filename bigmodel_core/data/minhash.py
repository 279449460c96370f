"""Near-duplicate search over many texts: MinHash signatures of word shingles and LSH banding.

The signature is one-permutation MinHash (Li, Owen & Zhang 2012) with densification: each shingle is hashed
once (64 bits), its top bits pick one of `bins` bins and the rest is its value; a text's signature holds the
smallest value per bin, and a bin no shingle fell into borrows the value of another bin of the same text,
chosen by a probe sequence shared by all texts (Shrivastava 2017), so two texts agree on a bin with
probability equal to their Jaccard similarity. One hash per shingle instead of one per shingle and
permutation, computed in one compiled pass over the texts' bytes (kernels.scan.text_scan), which also counts
every text's words and the distinct words for the data profile, and finds the group keys and text facts.

Words are the whitespace-separated words (Python's str.split; charset.WHITESPACE) of the text lower-cased as
pyarrow's utf8_lower does (the kernel lower-cases as it reads, with the table charset pins from utf8_lower);
a shingle is `k` consecutive words (a text of k words or fewer is one shingle). A word's hash depends on its
bytes alone (the definition is hashing.word_hash), so a text's signature does not depend on the other
rows or on the process. LSH bands and rows come from datasketch's optimiser for the threshold; candidate
pairs from shared bands are then checked against the threshold on the full signature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.data.hashing import mix as _mix

BINS = 128  # kernels.scan.text_scan picks a bin with a shingle hash's top 7 bits
_MUL = [
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xD6E8FEB86659FD93),
    np.uint64(0xFF51AFD7ED558CCD),
    np.uint64(0xC4CEB9FE1A85EC53),
]


def signatures(texts: list[str] | pa.Array, k: int, on_words=None) -> np.ndarray:
    """(n, BINS) uint32 signatures, one row per text (a text without words matches no other). on_words, if
    given, is called once with the distinct lower-cased words of all texts and how often each occurs (so a
    caller can count words without splitting the texts again)."""
    return scan(texts, k, on_words=on_words)[0]


def scan(
    texts: list[str] | pa.Array, k: int, want: np.ndarray | None = None, on_words=None, low_bits: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The word count of every text (len(text.split()), 0 for null) and, for the texts with want[i] (all
    without it), their signature (the others' rows are 0) and words for on_words (see signatures).
    low_bits: the signatures as bbit() gives them (uint8), written so by the kernel without the 32-bit
    array. One Scanner over one part."""
    scanner = Scanner(k, vocab=on_words is not None)
    got = scanner.scan(texts, want, low_bits=low_bits)
    if on_words is not None:
        on_words(*scanner.vocabulary())
    return got.sig, got.words


@dataclass
class Scan:
    """What Scanner.scan finds per text (see kernels.scan.text_scan)."""

    sig: np.ndarray  # (n, BINS) signatures of the wanted texts (uint32, or uint8 with low_bits), 0 elsewhere
    words: np.ndarray  # int64 word counts
    key_hi: np.ndarray  # uint64 and uint16: hashing.text_key of the words of the lower-cased text
    key_lo: np.ndarray
    chars: np.ndarray  # int64 lengths in code points
    flags: np.ndarray  # uint8 CONTROL | REPLACEMENT | MARKUP | CASEFOLD (kernels.scan)


class Scanner:
    """kernels.scan.text_scan over a text column given in parts (record batches): per part the signatures, word
    counts, keys and text facts; the distinct words of the wanted texts and their counts (vocab) are kept
    from part to part and read at the end (vocabulary()), so no per-part word lists are summed."""

    def __init__(self, k: int, vocab: bool = False) -> None:
        self.k, self.vocab = k, vocab
        self.table, self.slots = np.zeros((1 << 16, 2), dtype=np.int64), np.zeros((1 << 15, 3), dtype=np.int64)
        self.store = np.empty(1 << 20 if vocab else 1, dtype=np.uint8)
        self.state = np.zeros(5, dtype=np.int64)  # see text_scan

    def scan(
        self,
        texts,
        want: np.ndarray | None = None,
        low_bits: bool = False,
        lower: bool = True,
        sig: np.ndarray | None = None,
    ) -> Scan:
        """texts: an Arrow string array (or what columns.as_array takes), read lower-cased as pyarrow's
        utf8_lower makes them (by the kernel, as it reads: charset.fold_table) unless lower=False; sig: where to
        write the signatures ((n, BINS), zeros), if not new."""
        from bigmodel_core.data.charset import fold_table
        from bigmodel_core.data.columns import as_array, byte_view
        from bigmodel_core.data.kernels.scan import grown, text_scan

        arr = pc.fill_null(as_array(texts), "")
        n = len(arr)
        want = np.ones(n, dtype=bool) if want is None else np.ascontiguousarray(want, dtype=bool)
        offsets, data = byte_view(arr)
        if sig is None:  # a uint32 stored in uint8 keeps its low 8 bits
            sig = np.zeros((n, BINS), dtype=np.uint8 if low_bits else np.uint32)
        got = Scan(
            sig,
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.uint64),
            np.zeros(n, dtype=np.uint16),
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.uint8),
        )
        st = self.state
        st[0] = 0
        while not text_scan(
            data,
            offsets,
            want,
            self.k,
            _MULS,
            _PROBES,
            got.sig,
            got.words,
            got.key_hi,
            got.key_lo,
            got.flags,
            self.vocab,
            self.table,
            self.slots,
            self.store,
            st,
            fold_table() if lower else _NO_FOLD,
        ):
            while self.table.shape[0] < 2 * st[3]:  # room for the next text's words, all new at worst
                self.table, self.slots = grown(self.table, self.slots, int(st[1]))
            if self.store.size < st[4]:
                bigger = np.empty(max(2 * self.store.size, int(st[4])), dtype=np.uint8)
                bigger[: st[2]] = self.store[: st[2]]
                self.store = bigger
        got.chars[:] = pc.utf8_length(arr).to_numpy(zero_copy_only=False)
        return got

    def vocabulary(self) -> tuple[pa.Array, np.ndarray]:
        """The distinct words of the wanted texts scanned so far, in order of first appearance, and their
        counts (the store holds their bytes one after the other, in that order)."""
        used, stored = int(self.state[1]), int(self.state[2])
        offsets = pa.py_buffer(np.append(self.slots[:used, 1], stored).astype(np.int64))
        distinct = pa.LargeStringArray.from_buffers(used, offsets, pa.py_buffer(self.store[:stored].copy()))
        return distinct, self.table[self.slots[:used, 0], 1].copy()


_NO_FOLD = np.zeros(0, dtype=np.uint32)
_MULS = np.array([_MUL[j % len(_MUL)] for j in range(16)], dtype=np.uint64)  # the multiplier of each shingle position
_PROBES = np.ascontiguousarray(np.random.default_rng(20241125).permuted(np.tile(np.arange(BINS), (64, 1)), axis=1))


def band_params(threshold: float, weights: tuple[float, float] = (0.1, 0.9)) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's optimiser picks for this threshold and BINS hash values."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=BINS, weights=weights)
    return int(lsh.b), int(lsh.r)


def bbit(sig: np.ndarray) -> np.ndarray:
    """The low 8 bits of each signature value (b-bit minwise hashing, Li & Koenig 2010): a quarter of the
    memory of 32-bit values. Two texts then also agree on a bin by chance (1 in 256), which similarity()
    takes out again."""
    return (sig & np.uint32(0xFF)).astype(np.uint8)


def _band_hash(block: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """One uint32 hash per row of a (n, rows) block of signature values (a million rows at a time, so the
    64-bit temporaries stay small)."""
    out = np.empty(len(block), dtype=np.uint32)
    for s in range(0, len(block), chunk):
        part = block[s : s + chunk]
        h = np.zeros(len(part), dtype=np.uint64)
        for c in range(part.shape[1]):
            h = _mix(h ^ part[:, c].astype(np.uint64))
        out[s : s + chunk] = (h >> np.uint64(32)).astype(np.uint32)
    return out


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint32: one hash per LSH band of each signature (texts sharing a band are candidates).
    32 bits keep memory at 4 bytes per band and text; a chance equality only adds a candidate pair that the
    full-signature check then drops."""
    out = np.empty((len(sig), bands), dtype=np.uint32)
    for b in range(bands):
        out[:, b] = _band_hash(sig[:, b * rows : (b + 1) * rows])
    return out


def candidate_pairs(
    sig: np.ndarray, bands: int, rows: int, max_bucket: int = 200, subset: np.ndarray | None = None
) -> np.ndarray:
    """(m, 2) int64 pairs (i < j) of texts that share at least one band. With `subset` (row numbers of sig)
    only those rows are searched and the pairs are positions in subset. One band at a time: memory holds one
    band's hashes and the pairs found so far."""
    n = len(sig) if subset is None else len(subset)
    codes = []
    for b in range(bands if n else 0):
        cols = slice(b * rows, (b + 1) * rows)
        block = sig[:, cols] if subset is None else sig[subset, cols]
        codes.append(np.unique(_bucket_codes(_band_hash(block), max_bucket)))
    return _decode(np.unique(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64), n)


def pairs_from_bands(hashes: np.ndarray, max_bucket: int = 200) -> np.ndarray:
    """(m, 2) int64 pairs (i < j) of rows of `hashes` (band_hashes) equal in at least one band."""
    n = len(hashes)
    codes = [_bucket_codes(hashes[:, b], max_bucket) for b in range(hashes.shape[1] if n else 0)]
    return _decode(np.unique(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64), n)


def _decode(codes: np.ndarray, n: int) -> np.ndarray:
    return np.stack([codes // n, codes % n], axis=1) if len(codes) else np.empty((0, 2), dtype=np.int64)


def _bucket_codes(h: np.ndarray, max_bucket: int) -> np.ndarray:
    """Pairs i < j with h[i] == h[j], as codes i * len(h) + j. A bucket of more than max_bucket texts pairs
    each with the bucket's first and with its neighbour (enough to connect a cluster)."""
    n = len(h)
    assert n < 2**32, "positions are packed in 32 bits"
    # hash and position packed in one uint64 and sorted (a plain sort of 64-bit numbers is about twice as fast
    # as a stable argsort of the hashes): equal hashes end up together, their positions ascending
    packed = (h.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    hs = packed >> np.uint64(32)
    same = np.nonzero(hs[1:] == hs[:-1])[0]
    del hs
    if not len(same):
        return np.empty(0, dtype=np.int64)
    # the members of the buckets of two or more: both ends of every pair of equal neighbours in sorted order
    member, follows = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    member[same] = member[same + 1] = follows[same + 1] = True
    at = np.nonzero(member)[0]
    pos = (packed[at] & np.uint64(0xFFFFFFFF)).astype(np.int64)  # ascending within a bucket
    bucket = np.cumsum(~follows[at]) - 1
    size = np.bincount(bucket)
    big = size[bucket] > max_bucket
    found = []
    # a bucket of up to max_bucket: every pair, taken as the members d places apart for d = 1, 2, ...
    small_pos, small_bucket = pos[~big], bucket[~big]
    for d in range(1, int(size[size <= max_bucket].max(initial=1))):
        together = small_bucket[:-d] == small_bucket[d:]
        found.append(small_pos[:-d][together] * n + small_pos[d:][together])
    # larger: each member with the first and with the one before it
    for b in np.nonzero(size > max_bucket)[0].tolist():
        members = pos[bucket == b]
        found.append(members[0] * n + members[1:])
        found.append(members[:-1] * n + members[1:])
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def similarity(sig: np.ndarray, pairs: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """Estimated Jaccard similarity of each pair: the share of bins where the signatures agree. For 8-bit
    signatures (bbit) the chance agreement is taken out: (agree - 1/256) / (1 - 1/256), at least 0."""
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + chunk] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    if sig.dtype == np.uint8:
        out = np.clip((out - 1 / 256) / (1 - 1 / 256), 0.0, 1.0)
    return out


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per text given the similar pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]
