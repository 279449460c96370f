"""Near-duplicate search over many texts, vectorised: MinHash signatures of word shingles and LSH banding.

The signature is one-permutation MinHash (Li, Owen & Zhang 2012) with densification: each shingle is hashed
once (64 bits), its top bits pick one of `bins` bins and the rest is its value; a text's signature holds the
smallest value per bin, and a bin no shingle fell into borrows the value of another bin of the same text,
chosen by a probe sequence shared by all texts (Shrivastava 2017), so two texts agree on a bin with
probability equal to their Jaccard similarity. One hash per shingle instead of one per shingle and
permutation: the whole search costs a few numpy passes over the words.

Words are the whitespace-separated words of the lower-cased text; a shingle is `k` consecutive words (a text
of k words or fewer is one shingle). A word's hash depends on its bytes alone (hashing.string_hashes, in numpy), so a
text's signature does not depend on the other rows or on the process. LSH bands and rows come from datasketch's optimiser for the
threshold; candidate pairs from shared bands are then checked against the threshold on the full signature.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.data.hashing import mix as _mix
from bigmodel_core.data.hashing import string_hashes as _string_hashes

BINS = 128
_BITS = 7  # log2(BINS)
_MUL = [np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9),
        np.uint64(0xD6E8FEB86659FD93), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)]
_EMPTY = np.uint32(np.iinfo(np.uint32).max)  # signatures hold 32-bit values: half the memory of 64


def signatures(texts: list[str] | pa.Array, k: int, chunk_rows: int = 8192, on_words=None) -> np.ndarray:
    """(n, BINS) uint32 signatures, one row per text (a text without words matches no other). on_words, if
    given, is called once with the distinct lower-cased words of all texts and how often each occurs (so a
    caller can count words without splitting the texts again). Chunks of a few thousand texts keep the
    per-word arrays in cache: 65,536 at once took twice the time of 8,192."""
    arr = pa.array(texts, type=pa.large_string()) if not isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    out = np.empty((len(arr), BINS), dtype=np.uint32)
    seen: list[tuple[pa.Array, np.ndarray]] = []
    for start in range(0, len(arr), chunk_rows):
        out[start:start + chunk_rows] = _signatures(arr.slice(start, chunk_rows), k,
                                                    None if on_words is None else seen.append)
    if on_words is not None and seen:
        encoded = pc.dictionary_encode(pa.concat_arrays([words for words, _ in seen]))
        counts = np.bincount(encoded.indices.to_numpy(zero_copy_only=False), minlength=len(encoded.dictionary),
                             weights=np.concatenate([c for _, c in seen]))
        on_words(encoded.dictionary, counts.astype(np.int64))
    return out


def _signatures(arr: pa.Array, k: int, keep_words=None) -> np.ndarray:
    from bigmodel_core.data.columns import split_words

    words, counts = split_words(arr, lower=True)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = len(counts)
    # a hash per distinct word, spread over its occurrences
    encoded = pc.dictionary_encode(words)
    index = encoded.indices.to_numpy(zero_copy_only=False)
    wh = _string_hashes(encoded.dictionary)[index]
    if keep_words is not None:  # this chunk's distinct words and their counts
        keep_words((encoded.dictionary, np.bincount(index, minlength=len(encoded.dictionary))))
    total = len(wh)
    padded = np.concatenate([wh, np.zeros(k, dtype=np.uint64)])
    # the word at position i, and the k-1 after it when they belong to the same text (0 when past its end)
    text_of = np.repeat(np.arange(n, dtype=np.int64), counts)
    ends = offsets[1:][text_of]
    pos = np.arange(total, dtype=np.int64)
    sh = np.zeros(total, dtype=np.uint64)
    for j in range(k):
        nxt = padded[pos + j] if j else wh
        if j:
            nxt = np.where(pos + j < ends, nxt, np.uint64(0))
        sh = (sh + nxt + np.uint64(j + 1)) * _MUL[j % len(_MUL)]  # word hashes are random already: one mix at the end
    sh = _mix(sh)
    # a shingle starts at i when k words fit from i, or at a text's first word when the text is shorter
    starts_ok = (pos + k <= ends) | ((pos == offsets[:-1][text_of]) & (counts[text_of] <= k))
    sh, text_of = sh[starts_ok], text_of[starts_ok]
    bins = (sh >> np.uint64(64 - _BITS)).astype(np.int64)
    values = ((sh >> np.uint64(64 - _BITS - 32)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    sig = np.full(n * BINS, _EMPTY, dtype=np.uint32)
    np.minimum.at(sig, text_of * BINS + bins, values)
    sig = _densify(sig.reshape(n, BINS))
    wordless = np.nonzero(counts == 0)[0]
    if len(wordless):  # no words, no shingles: a signature of its own that matches nothing
        sig[wordless] = (_mix((wordless[:, None] * BINS + np.arange(BINS)).astype(np.uint64) + np.uint64(1 << 62))
                         >> np.uint64(32)).astype(np.uint32)
    return sig


_PROBES = np.random.default_rng(20241125).permuted(np.tile(np.arange(BINS), (64, 1)), axis=1)


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from another bin of the same text: attempt t looks at bin _PROBES[t][bin]; a bin
    still empty after every attempt takes the text's smallest value."""
    empty_rows, empty_bins = np.nonzero(sig == _EMPTY)
    filled = sig.copy()
    for t in range(len(_PROBES)):
        if not len(empty_rows):
            break
        donor = sig[empty_rows, _PROBES[t][empty_bins]]
        got = donor != _EMPTY
        # the attempt number is mixed in, so a borrowed value differs from the donor's own
        filled[empty_rows[got], empty_bins[got]] = (_mix(donor[got].astype(np.uint64) + np.uint64(t + 1))
                                                    >> np.uint64(32)).astype(np.uint32)
        empty_rows, empty_bins = empty_rows[~got], empty_bins[~got]
    if len(empty_rows):
        filled[empty_rows, empty_bins] = sig.min(axis=1)[empty_rows]
    return filled


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
        part = block[s:s + chunk]
        h = np.zeros(len(part), dtype=np.uint64)
        for c in range(part.shape[1]):
            h = _mix(h ^ part[:, c].astype(np.uint64))
        out[s:s + chunk] = (h >> np.uint64(32)).astype(np.uint32)
    return out


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint32: one hash per LSH band of each signature (texts sharing a band are candidates).
    32 bits keep memory at 4 bytes per band and text; a chance equality only adds a candidate pair that the
    full-signature check then drops."""
    out = np.empty((len(sig), bands), dtype=np.uint32)
    for b in range(bands):
        out[:, b] = _band_hash(sig[:, b * rows:(b + 1) * rows])
    return out


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, max_bucket: int = 200,
                    subset: np.ndarray | None = None) -> np.ndarray:
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
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = np.nonzero(hs[1:] == hs[:-1])[0]
    if not len(same):
        return np.empty(0, dtype=np.int64)
    # runs of equal band hashes: [start, end) in sorted order
    run_start = np.nonzero(np.diff(np.concatenate([[-2], same])) != 1)[0]
    starts = same[run_start]
    ends = np.concatenate([same[run_start[1:] - 1], same[-1:]]) + 2
    # buckets of two (most of them) at once; larger ones one by one
    pair = ends - starts == 2
    a, b = order[starts[pair]].astype(np.int64), order[starts[pair] + 1].astype(np.int64)
    found = [np.minimum(a, b) * n + np.maximum(a, b)]
    for s, e in zip(starts[~pair].tolist(), ends[~pair].tolist()):
        members = np.sort(order[s:e]).astype(np.int64)
        m = len(members)
        if m <= max_bucket:
            i, j = np.triu_indices(m, 1)
            found.append(members[i] * n + members[j])
        else:
            found.append(members[0] * n + members[1:])
            found.append(members[:-1] * n + members[1:])
    return np.concatenate(found)


def similarity(sig: np.ndarray, pairs: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """Estimated Jaccard similarity of each pair: the share of bins where the signatures agree. For 8-bit
    signatures (bbit) the chance agreement is taken out: (agree - 1/256) / (1 - 1/256), at least 0."""
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        out[s:s + chunk] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    if sig.dtype == np.uint8:
        out = np.clip((out - 1 / 256) / (1 - 1 / 256), 0.0, 1.0)
    return out


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per text given the similar pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]
