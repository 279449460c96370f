"""The byte-level pieces the loops share: the mixing function and word hash, the byte classes (from charset's
sets), eight-bytes-at-a-time helpers, the text flags, the pinned case-folding table, and the growable vocabulary
table the scan keeps its words in."""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from bigmodel_core.data import charset, hashing
from bigmodel_core.data.hashing import _GOLD, _M1, _M2, _SEED  # the one definition of the constants


@njit(cache=True, inline="always")
def mix(x):
    """hashing.mix for one uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _word_hash(data, a, b):
    """hashing.word_hash of the bytes data[a:b]."""
    h = _SEED
    acc = np.uint64(0)
    shift = np.uint64(0)
    for i in range(a, b):
        h, acc, shift = _feed(h, acc, shift, data[i])
    if shift:
        h = mix(h ^ acc)
    return mix(h + np.uint64(b - a) * _GOLD)


#: byte classes of text_scan (bits), from charset's sets: ASCII whitespace, the lead byte of a multi-byte
#: whitespace character (_wide_space), an ASCII control character, '<' or '&', the lead byte of the C1 controls
#: (0xC2), 0xEF (U+FFFD starts with it), any byte >= 0x80, '>'
_SP, _WIDE, _CTL, _MARK, _C2, _EF, _HIGH, _GT = 1, 2, 4, 8, 16, 32, 64, 128
# the byte loops (eight bytes at a time: _specials8, layout) take every ASCII whitespace or control character
# for one below 0x21 or DEL, and every non-ASCII one for a character of two or three bytes
assert all(c < 0x21 or c == 0x7F for c in (*charset.WHITESPACE, *charset.CONTROL) if c < 0x80)
assert all(0x80 <= c < 0x10000 for c in charset.WHITESPACE if c >= 0x80)
assert all(0x80 <= c < 0xC0 for c in charset.CONTROL if c >= 0x80)
SCAN_CLASS = np.zeros(256, dtype=np.uint8)
SCAN_CLASS[[c for c in charset.WHITESPACE if c < 0x80]] |= _SP
SCAN_CLASS[sorted({chr(c).encode()[0] for c in charset.WHITESPACE if c >= 0x80})] |= _WIDE
SCAN_CLASS[[c for c in charset.CONTROL if c < 0x80]] |= _CTL
SCAN_CLASS[[0x3C, 0x26]] |= _MARK
SCAN_CLASS[0x3E] |= _GT
SCAN_CLASS[0xC2] |= _C2
SCAN_CLASS[0xEF] |= _EF
SCAN_CLASS[0x80:] |= _HIGH
#: per code point below the last whitespace character: 1 where it is non-ASCII whitespace
WIDE_SPACE = np.zeros(max(charset.WHITESPACE) + 1, dtype=np.uint8)
WIDE_SPACE[[c for c in charset.WHITESPACE if c >= 0x80]] = 1
#: per second byte of a character led by 0xC2 (U+0080-U+00BF), its low six bits: 1 where it is a control
C1_CONTROL = np.zeros(64, dtype=np.uint8)
C1_CONTROL[[c - 0x80 for c in charset.CONTROL if c >= 0x80]] = 1
_ONE, _L8, _H8, _M7 = (
    np.uint64(1),
    np.uint64(0x0101010101010101),
    np.uint64(0x8080808080808080),
    np.uint64(0x7F7F7F7F7F7F7F7F),
)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_CTZ = np.zeros(64, dtype=np.int64)  # bit index of a power of two, by its de Bruijn product's top 6 bits
for _b in range(64):
    _CTZ[((1 << _b) * int(_DEBRUIJN) % 2**64) >> 58] = _b


@njit(cache=True, inline="always")
def _load8(data, i):
    """The bytes data[i:i+8] as one little-endian uint64 (compiled to one load)."""
    x = np.uint64(0)
    for s in range(8):
        x |= np.uint64(data[i + s]) << np.uint64(8 * s)
    return x


@njit(cache=True, inline="always")
def _zero8(y):
    """0x80 in each byte of y that is 0, 0 elsewhere (exact: no carry crosses a byte)."""
    return ~(((y & _M7) + _M7) | y | _M7)


@njit(cache=True, inline="always")
def _specials8(x):
    """0x80 in each byte of x that the byte loop of text_scan must look at (SCAN_CLASS not 0, or a plain
    space): below 0x21, 0x7F, '&', '<', '>', or 0x80 and above; 0 elsewhere."""
    below21 = ~((x & _M7) + _L8 * np.uint64(0x5F)) & _H8
    return (
        (x & _H8)
        | below21
        | _zero8(x ^ (_L8 * np.uint64(0x7F)))
        | _zero8(x ^ (_L8 * np.uint64(0x26)))
        | _zero8(x ^ (_L8 * np.uint64(0x3C)))
        | _zero8(x ^ (_L8 * np.uint64(0x3E)))
    )


@njit(cache=True, inline="always")
def _lower8(x):
    """The ASCII capitals of x (bytes all below 0x80) lower-cased, byte by byte."""
    ge_a = x + _L8 * np.uint64(0x3F)  # a byte's top bit set where it is >= 'A' (0x41)
    past_z = x + _L8 * np.uint64(0x25)  # ... where it is > 'Z' (0x5A)
    return x | ((ge_a & ~past_z & _H8) >> np.uint64(2))


#: text_scan's flags per text (CASEFOLD: only when it lower-cases)
CONTROL, REPLACEMENT, MARKUP, CASEFOLD = 1, 2, 4, 8
FOLD_LIMIT = charset.FOLD_LIMIT  # fold_table() covers the code points below this (above, nothing folds)
#: the bit of a fold_table() entry marking a character whose case folding (charset.casefold) is not its lower case
FOLDS_OTHERWISE = np.uint32(1 << 31)


@functools.cache
def fold_table() -> np.ndarray:
    """For each code point below FOLD_LIMIT, the code point it is lower-cased to (one for one: pyarrow's
    utf8_lower as charset's committed table records it), with FOLDS_OTHERWISE where its pinned case folding
    (charset.casefold) is something else (ß -> ss, ς -> σ, Cherokee, ligatures: under 300 characters). ASCII
    entries are not read (the scan lower-cases 'A'-'Z' by rule). Read from the table, not from the installed
    libraries, so a library upgrade changes neither the words read nor the group keys."""
    lower, fold = charset.folds()
    table = np.arange(FOLD_LIMIT, dtype=np.uint32)
    for c, low in lower.items():
        table[c] = low
    for c in set(lower) | set(fold):
        if fold.get(c, chr(c)) != chr(lower.get(c, c)):
            table[c] |= FOLDS_OTHERWISE
    table[0x41:0x5B] += 32  # the ASCII rule, for a byte sequence that decodes to ASCII (never valid UTF-8)
    return table


_KEY_SEED, _KEY_MUL = np.uint64(hashing.KEY_SEED), np.uint64(hashing.KEY_MUL)


@njit(cache=True)
def gather(data, slots, n_used, out_offsets, out_data):
    """The words of slots[:n_used], in that order, as (offsets, bytes) of a string array."""
    pos = 0
    out_offsets[0] = 0
    for u in range(n_used):
        f, m = slots[u, 1], slots[u, 2]
        out_data[pos : pos + m] = data[f : f + m]
        pos += m
        out_offsets[u + 1] = pos


@njit(cache=True)
def grown(table, slots, n_used):
    """The table at twice the size, its entries moved (slots follow), and room for as many more slots."""
    size = 2 * table.shape[0]
    new = np.zeros((size, 2), dtype=np.int64)
    more = np.zeros((size // 2, 3), dtype=np.int64)
    more[:n_used] = slots[:n_used]
    mask = new.shape[0] - 1
    for u in range(n_used):
        row = table[more[u, 0]]
        slot = np.int64(np.uint64(row[0]) >> np.uint64(1)) & mask
        while new[slot, 0] != 0:
            slot = (slot + 1) & mask
        new[slot] = row
        more[u, 0] = slot
    return new, more


@njit(cache=True, inline="always")
def _wide_space(data, i, end):
    """The length in bytes of the non-ASCII whitespace character (charset.WHITESPACE) at data[i], 0 if the
    character there is not one."""
    cp, n = _char_at(data, i, end)
    return n if n and cp < WIDE_SPACE.size and WIDE_SPACE[cp] else 0


@njit(cache=True, inline="always")
def _space_at(data, i, end, c):
    """The length in bytes of the whitespace character at data[i] (class c), 0 if it is not whitespace."""
    if c & _SP:
        return 1
    if c & _WIDE:
        return _wide_space(data, i, end)
    return 0


@njit(cache=True, inline="always")
def _feed(h, acc, shift, byte):
    """One byte into a word hash being read (hashing.word_hash: eight bytes to a chunk)."""
    acc |= np.uint64(byte) << shift
    shift += np.uint64(8)
    if shift == np.uint64(64):
        h = mix(h ^ acc)
        acc = np.uint64(0)
        shift = np.uint64(0)
    return h, acc, shift


@njit(cache=True, inline="always")
def _char_at(data, i, end):
    """(code point, length in bytes) of the UTF-8 character starting at data[i] (a byte >= 0x80); length 0
    where the bytes there are not a whole character (then the byte is taken as it is)."""
    c = np.int64(data[i])
    if c < 0xC0:
        return 0, 0
    if c < 0xE0:
        n, cp = 2, c & 0x1F
    elif c < 0xF0:
        n, cp = 3, c & 0x0F
    elif c < 0xF8:
        n, cp = 4, c & 0x07
    else:
        return 0, 0
    if i + n > end:
        return 0, 0
    for x in range(i + 1, i + n):
        d = np.int64(data[x])
        if d & 0xC0 != 0x80:
            return 0, 0
        cp = (cp << 6) | (d & 0x3F)
    return cp, n
