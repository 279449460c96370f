"""Stable 64-bit hashing in numpy: the same numbers in every process and on every machine (no Python hash
seed), for MinHash word hashes, augmentation's random numbers and the like."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SEED = np.uint64(0x6B6D62696D6F6465)  # "bigmodel"
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (arithmetic modulo 2^64)."""
    with np.errstate(over="ignore"):  # numpy warns when a scalar wraps around; arrays wrap silently
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def string_hashes(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash per string of a (large_)string array without nulls: each byte at position i of its
    string is mixed with i into a 64-bit value, a string's values are summed and the sum is mixed with its
    length. For two different strings of the same length the sums differ by mixed values of different
    (position, byte) pairs, so they collide only by chance (2^-64); the length separates the others."""
    n = len(arr)
    if not n:
        return np.empty(0, dtype=np.uint64)
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    pos = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    terms = mix((pos.astype(np.uint64) << np.uint64(8)) + data.astype(np.uint64) + _SEED)
    sums = np.zeros(n, dtype=np.uint64)
    nonempty = lengths > 0
    if len(data):
        sums[nonempty] = np.add.reduceat(terms, starts[nonempty])
    return mix(sums + lengths.astype(np.uint64) * _GOLD)


def streams(seeds: np.ndarray, stream: int, positions: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (seed, position): a counter-based generator, so any element can
    be computed on its own, in any order. `stream` separates independent uses of one seed."""
    with np.errstate(over="ignore"):
        x = mix(seeds.astype(np.uint64) ^ mix(np.uint64(stream))) + positions.astype(np.uint64) * _GOLD
    return (mix(x) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


# ---------------------------------------------------------------- words and texts, one at a time
# The definitions the compiled text scan (kernels.scan.text_scan) computes for every word and text of a column;
# written here for one string at a time, in plain Python integers, as the reference the tests hold it to.
_MASK = (1 << 64) - 1
KEY_SEED = 0x7465787420B16B3F  # the starting value of a text key's first half
KEY_MUL = 0xD6E8FEB86659FD93  # the multiplier of its second half (a polynomial in the word hashes)


def mix_int(x: int) -> int:
    """mix() for one Python integer (taken modulo 2^64)."""
    x &= _MASK
    x ^= x >> 30
    x = (x * int(_M1)) & _MASK
    x ^= x >> 27
    x = (x * int(_M2)) & _MASK
    return x ^ (x >> 31)


def word_hash(word: bytes) -> int:
    """A 64-bit hash of a word's UTF-8 bytes, read eight at a time: each 8-byte chunk (little-endian, the last
    one padded with zero bytes) is mixed into the running value, which is finally mixed with the length.
    Every step is a bijection of the running value, so two words of one length collide only by chance
    (2^-64) and the length separates the others. One mix per eight bytes, where string_hashes makes one per
    byte: the word hashes of MinHash, group keys and label_noise's n-grams (100M+ words at 1M rows)."""
    h = int(_SEED)
    for s in range(0, len(word), 8):
        h = mix_int(h ^ int.from_bytes(word[s : s + 8], "little"))
    return mix_int(h + len(word) * int(_GOLD))


def text_key(words: list[bytes]) -> tuple[int, int]:
    """An 80-bit key of a sequence of words, as (64-bit, 16-bit) integers: two independent chains over the
    word hashes (one mixing after every word, one a polynomial), each finished with the number of words.
    quality.group_key is the key of the words of the normalised text."""
    hi, lo = KEY_SEED, 0
    for w in words:
        h = word_hash(w)
        hi = mix_int(hi ^ h)
        lo = (lo * KEY_MUL + h) & _MASK
    n = len(words) * int(_GOLD)
    return mix_int(hi + n), mix_int(lo + n) >> 48
