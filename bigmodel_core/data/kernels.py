"""Compiled loops (numba) over the UTF-8 bytes of a text column, for the per-word work that array passes do
badly: MinHash signatures with the word counts and vocabulary that come with them (validate), and the
word-dropout variants of augment. Each computes exactly the numbers of its row-by-row definition (word hashes
and text keys: hashing.word_hash and text_key; signatures: minhash's docstring; variants: augment.variant;
the mixing function and its constants: hashing.mix), in one pass over the bytes where the array passes they
replace made a dozen over per-word arrays (at a million rows, measured alternating with the numpy version:
validate 1.24x and augment 1.37x less CPU time). tests/test_kernels.py, tests/test_vectorized_text.py and
tests/test_split_augment.py compare them with their definitions.

Everything here is uint64 arithmetic modulo 2^64: a signed operand would make numba compute in float64, so
every constant and operand is cast to uint64 explicitly. Compiled code is cached on disk (cache=True); the
first call in a fresh install compiles for a few seconds.
"""

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


_OPEN = 16  # a text's flag while text_scan reads it: a tag can start before this point ('<' then a letter or '/')
_ENTITY_BYTES = 27  # the longest entity the HTML rule matches, '&#' + six 4-byte digits + ';', in bytes


@njit(cache=True, inline="always")
def _byte_flags(data, i, end, c, f):
    """The text's flags f with those the byte data[i] (of class c, not 0) raises. MARKUP: a '>' after a
    possible tag start, or a possible entity start ('&' then a letter or '#') with a ';' in reach of it
    (every match of the HTML rule has one or the other, and the rule runs only on those texts)."""
    if c & _CTL:
        f |= CONTROL
    if c & _MARK and i + 1 < end:
        d = data[i + 1] | 0x20
        if 0x61 <= d <= 0x7A or data[i + 1] == (0x2F if data[i] == 0x3C else 0x23):
            if data[i] == 0x3C:
                f |= _OPEN
            else:
                for x in range(i + 2, min(end, i + _ENTITY_BYTES + 1)):
                    if data[x] == 0x3B:
                        f |= MARKUP
                        break
    if c & _GT and f & _OPEN:
        f |= MARKUP
    if c & _C2 and i + 1 < end and data[i + 1] & 0xC0 == 0x80 and C1_CONTROL[data[i + 1] & 0x3F]:
        f |= CONTROL
    if c & _EF and i + 2 < end and data[i + 1] == 0xBF and data[i + 2] == 0xBD:
        f |= REPLACEMENT
    return f


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


@njit(cache=True, inline="always")
def _utf8_len(cp):
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


@njit(cache=True, inline="always")
def _utf8_byte(cp, n, x):
    """Byte x of the n-byte UTF-8 encoding of cp."""
    if n == 1:
        return cp
    if x == 0:
        lead = 0xC0 if n == 2 else 0xE0 if n == 3 else 0xF0
        return lead | (cp >> (6 * (n - 1)))
    return 0x80 | ((cp >> (6 * (n - 1 - x))) & 0x3F)


@njit(cache=True)
def _store_lowered(data, a, b, fold_map, store, at):
    """The bytes data[a:b] lower-cased as text_scan reads them with fold, into store[at:]; returns the end."""
    i = a
    while i < b:
        v = data[i]
        if v < 0x80:
            store[at] = v + 32 if 65 <= v <= 90 else v
            at += 1
            i += 1
            continue
        cp, m = _char_at(data, i, b)
        if m == 0:
            store[at] = v
            at += 1
            i += 1
            continue
        low = np.int64(fold_map[cp] & 0x1FFFFF) if cp < fold_map.size else cp
        n = _utf8_len(low)
        for x in range(n):
            store[at + x] = _utf8_byte(low, n, x)
        at += n
        i += m
    return at


@njit(cache=True)
def text_scan(
    data,
    offsets,
    want,
    k,
    muls,
    probes,
    sig,
    words,
    key_hi,
    key_lo,
    chars,
    flags,
    vocab,
    table,
    slots,
    store,
    state,
    fold,
    fold_map,
):
    """Everything validate reads from a text column, in one pass over its UTF-8 bytes (eight at a time where
    they are plain ASCII, _specials8). For every
    text t: its word count (words[t]: len(text.split())), the key of its words (key_hi[t], key_lo[t]:
    hashing.text_key), its length in code points (chars[t]) and flags (CONTROL: a character U+0000-U+0008,
    U+000B, U+000C, U+000E-U+001F or U+007F-U+009F; REPLACEMENT: U+FFFD; MARKUP: '<' followed by an ASCII
    letter or '/' and later by '>', or '&' followed by one or '#' and within 27 bytes by ';': where HTML
    left after cleaning can be); for the texts
    with want[t], the densified one-permutation MinHash signature of their k-word shingles (sig[t], see the
    minhash module) and, with vocab, their words counted in an open-addressing table kept from call to call
    (table: a row per slot, word hash (0: free) and count; slots: a row per distinct word, in order of
    appearance, its slot, the offset of its bytes in store and its length; store: the bytes of those words).

    fold: the bytes are read lower-cased (ASCII letters in place, other characters through fold_map,
    fold_table(): pyarrow's utf8_lower as charset pins it), and CASEFOLD marks a text with a character whose
    pinned case folding (charset.casefold) differs; without it they are read as they are.

    state = (first text, slots taken, store bytes taken, slots needed, store bytes needed). Before a wanted
    text whose words might fill the table past half, or the store, it stops, writes state and returns False;
    the caller makes room (grown, a larger store) and calls again. Returns True when every text is done."""
    bins = sig.shape[1]
    empty = np.uint32(0xFFFFFFFF)
    mask = table.shape[0] - 1
    n_used, stored = state[1], state[2]
    ring = np.zeros(16, dtype=np.uint64)
    raw = np.empty(bins, dtype=np.uint32)
    for t in range(state[0], offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        on = want[t]
        count = on and vocab
        room = (b - a) + (b - a) // 2 if fold else b - a  # lower-casing makes a character 1.5x longer at most
        if count and (2 * (n_used + (b - a + 1) // 2 + 1) > table.shape[0] or stored + room > store.size):
            state[0], state[1], state[2] = t, n_used, stored
            state[3], state[4] = n_used + (b - a + 1) // 2 + 1, stored + room
            return False
        if on:
            raw[:] = empty
        n = 0
        fl = 0
        high = False
        khi, klo = _KEY_SEED, np.uint64(0)
        i = a
        while i < b:
            v = data[i]
            if v == 32:  # a plain space, the most common byte to look up (tested first: 20% faster)
                i += 1
                continue
            c = SCAN_CLASS[v]
            if c:
                fl = _byte_flags(data, i, b, c, fl)
                high |= (c & _HIGH) != 0
                w = _space_at(data, i, b, c)
                if w:
                    i += w
                    continue
            # a word starts at i: its bytes go into the hash eight at a time (hashing.word_hash)
            h = _SEED
            acc = np.uint64(0)
            shift = np.uint64(0)
            j = i
            wl = 0  # the word's length in bytes as read (lower-cased with fold)
            # eight bytes at a time while they are plain (ASCII, no whitespace, control, '<' or '&': _plain8),
            # which is most words whole; the byte loop below takes over at the first other byte
            while j + 8 <= data.size:
                x = _load8(data, j)
                sp = _specials8(x)
                p = 8 if sp == 0 else _CTZ[(((sp & (~sp + _ONE)) * _DEBRUIJN) >> np.uint64(58))] >> 3
                if p > b - j:
                    p = b - j
                if p == 0:
                    break
                if p < 8:
                    x &= (_ONE << np.uint64(8 * p)) - _ONE
                if fold:
                    x = _lower8(x)
                wl += p
                j += p
                if p < 8:  # a word shorter than eight bytes, or its last part: the rest of the hash's chunk
                    acc, shift = x, np.uint64(8 * p)
                    break
                h = mix(h ^ x)
            go = True
            if j > i:  # the byte the fast path stopped at is not looked at yet
                if j >= b:
                    go = False
                else:
                    v = data[j]
                    c = SCAN_CLASS[v]
                    if v == 32:
                        go = False
                    elif c:
                        fl = _byte_flags(data, j, b, c, fl)
                        high |= (c & _HIGH) != 0
                        if _space_at(data, j, b, c):
                            go = False
            while go:
                if not fold or v < 0x80:
                    h, acc, shift = _feed(h, acc, shift, v + 32 if fold and 65 <= v <= 90 else v)
                    wl += 1
                    j += 1
                else:
                    cp, m = _char_at(data, j, b)
                    if m == 0:  # not a whole character: the byte as it is
                        h, acc, shift = _feed(h, acc, shift, v)
                        wl += 1
                        j += 1
                    else:
                        low = cp
                        if cp < fold_map.size:
                            e = fold_map[cp]
                            low = np.int64(e & 0x1FFFFF)
                            if e & FOLDS_OTHERWISE:
                                fl |= CASEFOLD
                        nb = _utf8_len(low)
                        for x in range(nb):
                            h, acc, shift = _feed(h, acc, shift, _utf8_byte(low, nb, x))
                        wl += nb
                        j += m
                if j >= b:
                    break
                v = data[j]
                if v == 32:
                    break
                c = SCAN_CLASS[v]
                if c:
                    fl = _byte_flags(data, j, b, c, fl)
                    high |= (c & _HIGH) != 0
                    if _space_at(data, j, b, c):
                        break
            if shift:
                h = mix(h ^ acc)
            h = mix(h + np.uint64(wl) * _GOLD)
            khi = mix(khi ^ h)
            klo = klo * _KEY_MUL + h
            if on:
                if count:
                    key = np.int64(h | np.uint64(1))  # never 0, which marks a free slot
                    slot = np.int64(h >> np.uint64(1)) & mask
                    while True:
                        kk = table[slot, 0]
                        if kk == key:
                            table[slot, 1] += 1
                            break
                        if kk == 0:
                            table[slot, 0], table[slot, 1] = key, 1
                            slots[n_used, 0], slots[n_used, 1], slots[n_used, 2] = slot, stored, wl
                            if fold:
                                _store_lowered(data, i, j, fold_map, store, stored)
                            else:
                                store[stored : stored + wl] = data[i:j]
                            stored += wl
                            n_used += 1
                            break
                        slot = (slot + 1) & mask
                ring[n & 15] = h
                if n >= k - 1:  # the shingle of words n-k+1 .. n
                    _add_shingle(ring, n - k + 1, k, k, muls, raw)
            n += 1
            i = j
        words[t] = n
        nn = np.uint64(n) * _GOLD
        key_hi[t] = mix(khi + nn)
        key_lo[t] = np.uint16(mix(klo + nn) >> np.uint64(48))
        if high:  # code points: the bytes that do not continue a character
            m = 0
            for x in range(a, b):
                m += (data[x] & 0xC0) != 0x80
            chars[t] = m
        else:
            chars[t] = b - a
        flags[t] = fl & ~_OPEN
        if not on:
            continue
        if n == 0:  # no words, no shingles: a signature of its own that matches nothing
            for j in range(bins):
                sig[t, j] = np.uint32(
                    mix(np.uint64(t) * np.uint64(bins) + np.uint64(j) + np.uint64(1 << 62)) >> np.uint64(32)
                )
            continue
        if n < k:  # a text of fewer than k words is one shingle
            _add_shingle(ring, 0, n, k, muls, raw)
        _densify_row(raw, sig[t], probes, empty)
    state[0], state[1], state[2] = offsets.size - 1, n_used, stored
    return True


@njit(cache=True, inline="always")
def _add_shingle(ring, s, have, k, muls, raw):
    """The shingle of words s .. s+k-1 (the last k - have of them past the text's end: 0) into raw: its
    top 7 bits pick the bin, the next 32 are the value."""
    sh = np.uint64(0)
    for j in range(k):
        nxt = ring[(s + j) & 15] if j < have else np.uint64(0)
        sh = (sh + nxt + np.uint64(j + 1)) * muls[j]  # muls holds one multiplier per position (no division)
    sh = mix(sh)
    bn = np.int64(sh >> np.uint64(57))
    v = np.uint32((sh >> np.uint64(25)) & np.uint64(0xFFFFFFFF))
    if v < raw[bn]:
        raw[bn] = v


@njit(cache=True, inline="always")
def _densify_row(raw, out, probes, empty):
    """minhash._densify for one text: an empty bin borrows from the bin probe t names, t = 0, 1, ...; with
    no donor at all it takes the text's smallest value."""
    bins = raw.size
    smallest = empty
    for j in range(bins):
        if raw[j] < smallest:
            smallest = raw[j]
    for j in range(bins):
        v = raw[j]
        if v == empty:
            v = smallest
            for t in range(probes.shape[0]):
                d = raw[probes[t, j]]
                if d != empty:
                    v = np.uint32(mix(np.uint64(d) + np.uint64(t + 1)) >> np.uint64(32))
                    break
        out[j] = v


_AMP8, _SEMI8 = _L8 * np.uint64(0x26), _L8 * np.uint64(0x3B)


#: charset.REPAIRED_ENTITIES as rows of bytes, right-aligned in ENTITY_WIDTH columns (zeros before)
ENTITY_WIDTH = max(map(len, charset.REPAIRED_ENTITIES))
ENTITY_NAMES = np.zeros((len(charset.REPAIRED_ENTITIES), ENTITY_WIDTH), dtype=np.uint8)
for _r, _name in enumerate(charset.REPAIRED_ENTITIES):
    ENTITY_NAMES[_r, ENTITY_WIDTH - len(_name) :] = np.frombuffer(_name.encode("ascii"), dtype=np.uint8)


@njit(cache=True, inline="always")
def _entity_before(data, a, i):
    """Whether the bytes before the ';' at data[i] (text from a) can end a match of cleaning._ENTITY
    ('#' and one to five decimal digits, or a name of charset.REPAIRED_ENTITIES): a superset, as any byte
    >= 0x80 is taken for part of a digit (a character of Unicode category Nd) and up to 20 of them."""
    j = i - 1
    while j >= a and i - j <= 20 and (0x30 <= data[j] <= 0x39 or data[j] >= 0x80):
        j -= 1
    if j < i - 1 and j >= a and data[j] == 0x23:  # '#' then digits
        return True
    for r in range(ENTITY_NAMES.shape[0]):
        same = True
        for x in range(ENTITY_WIDTH):
            c = ENTITY_NAMES[r, ENTITY_WIDTH - 1 - x]
            if c == 0:
                break
            if i - 1 - x < a or data[i - 1 - x] != c:
                same = False
                break
        if same:
            return True
    return False


@njit(cache=True)
def entity_candidates(data, offsets, out):
    """out[t]: whether text t holds an '&' or a ';' that can end a broken entity (_entity_before), found
    eight bytes at a time: every text that cleaning's '&' or _ENTITY pattern matches, and a few more (the
    caller matches those again exactly)."""
    for t in range(offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        found = False
        i = a
        while i < b and not found:
            if i + 8 <= b:
                x = _load8(data, i)
                if (_zero8(x ^ _AMP8) | _zero8(x ^ _SEMI8)) == np.uint64(0):
                    i += 8
                    continue
            v = data[i]
            if v == 0x26 or (v == 0x3B and _entity_before(data, a, i)):
                found = True
            i += 1
        out[t] = found


_FIRST_LAST = np.uint64(0x8000000000000080)  # the top bits of a word's first and last byte


@njit(cache=True)
def layout(data, offsets, strip_html, collapse, lower, max_chars, out_data, out_offsets):
    """Steps 3-6 of cleaning (its docstring) for every text, in one pass over its bytes: tags (a '<', at
    most 200 characters other than '<' and '>', a '>', left to right as re.sub finds them) become a space;
    with collapse, every run of whitespace (charset.WHITESPACE) becomes one space and the ends are stripped;
    ASCII capitals are lower-cased with lower (str.lower for ASCII text: the caller redoes the others); the
    result is cut to max_chars characters. Writes the texts to (out_data, out_offsets), never longer than
    the input; returns the bytes written."""
    pos = 0
    out_offsets[0] = 0
    for t in range(offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        count = 0
        pending = False  # a whitespace run (or a tag) waits to be written as one space
        started = False  # a character other than whitespace was written
        i = a
        while i < b and count < max_chars:
            # eight bytes at once where they are written as they are: ASCII but '<', no other whitespace than
            # single spaces between other bytes, after a written character and with no space waiting
            if started and not pending and i + 8 <= b and count + 8 <= max_chars:
                x = _load8(data, i)
                spaces = _zero8(x ^ (_L8 * np.uint64(0x20)))
                odd = (x & _H8) | (~((x & _M7) + _L8 * np.uint64(0x60)) & _H8 & ~spaces)  # >= 0x80, < 0x20
                if strip_html:
                    odd |= _zero8(x ^ (_L8 * np.uint64(0x3C)))
                if collapse:
                    odd |= (spaces & (spaces >> np.uint64(8))) | (spaces & _FIRST_LAST)
                if odd == 0:
                    if lower:
                        x = _lower8(x)
                    for s in range(8):
                        out_data[pos + s] = np.uint8((x >> np.uint64(8 * s)) & np.uint64(0xFF))
                    pos += 8
                    count += 8
                    i += 8
                    continue
            v = data[i]
            if 0x20 < v < 0x80 and (v != 0x3C or not strip_html):  # ASCII, not whitespace, not a tag's start
                if pending and started:
                    out_data[pos] = 32
                    pos += 1
                    count += 1
                    if count >= max_chars:
                        break
                pending = False
                started = True
                out_data[pos] = v + 32 if lower and 65 <= v <= 90 else v
                pos += 1
                count += 1
                i += 1
                continue
            if v == 32 and collapse:
                pending = True
                i += 1
                continue
            space = 0
            if strip_html and v == 0x3C:
                j, n, end = i + 1, 0, -1
                while j < b:
                    d = data[j]
                    if d == 0x3E:
                        end = j
                        break
                    if d == 0x3C:
                        break
                    if (d & 0xC0) != 0x80:
                        n += 1
                        if n > 200:
                            break
                    j += 1
                if end >= 0:
                    space = end + 1 - i
            if space == 0 and collapse:
                c = SCAN_CLASS[v]
                if c:
                    space = _space_at(data, i, b, c)
                if space == 0 and v == 32:
                    space = 1
            if space and collapse:
                pending = True
                i += space
                continue
            if pending and started:
                out_data[pos] = 32
                pos += 1
                count += 1
                if count >= max_chars:
                    break
            pending = False
            started = True
            if space:  # a tag, without collapse: one space
                out_data[pos] = 32
                pos += 1
                count += 1
                i += space
                continue
            m = 1 if v < 0xC0 else 2 if v < 0xE0 else 3 if v < 0xF0 else 4
            if i + m > b:
                m = b - i
            for x in range(m):
                d = data[i + x]
                out_data[pos + x] = d + 32 if lower and 65 <= d <= 90 else d
            pos += m
            count += 1
            i += m
        out_offsets[t + 1] = pos
    return pos


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
def _uniform(seed, stream_key, position):
    """hashing.streams for one (seed, position); stream_key = mix(stream)."""
    return _unit(mix(seed ^ stream_key), position)


@njit(cache=True, inline="always")
def _unit(base, position):
    """_uniform(seed, stream_key, position) given base = mix(seed ^ stream_key)."""
    return np.float64(mix(base + np.uint64(position) * _GOLD) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def word_variants(data, offsets, seeds, dropout, swap_prob, drop_key, choice_key, swap_key, out_offsets, out_data):
    """augment.variant for every text: words are split on single spaces (so empty words count), each dropped
    with probability dropout (a text of one word keeps it; if all go, one chosen at random stays), then left
    to right a word swaps with the next with probability swap_prob (a swapped pair does not swap again),
    joined by single spaces. The output is never longer than the input; returns its length in bytes."""
    longest = 0
    for t in range(offsets.size - 1):
        longest = max(longest, offsets[t + 1] - offsets[t])
    starts = np.empty(longest + 1, dtype=np.int64)
    ends = np.empty(longest + 1, dtype=np.int64)
    pos = 0
    out_offsets[0] = 0
    for t in range(offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        seed = seeds[t]
        drop_base, swap_base = mix(seed ^ drop_key), mix(seed ^ swap_key)  # _uniform's first mix, once a text
        m = 0  # words[i] = data[starts[i]:ends[i]]
        s = a
        i = a
        while i + 8 <= b:  # eight bytes at a time: the spaces among them, lowest first
            spaces = _zero8(_load8(data, i) ^ (_L8 * np.uint64(0x20)))
            while spaces:
                at = i + (_CTZ[((spaces & (~spaces + _ONE)) * _DEBRUIJN) >> np.uint64(58)] >> 3)
                starts[m], ends[m] = s, at
                m += 1
                s = at + 1
                spaces &= spaces - _ONE
            i += 8
        for j in range(i, b):
            if data[j] == 32:
                starts[m], ends[m] = s, j
                m += 1
                s = j + 1
        starts[m], ends[m] = s, b
        m += 1
        if m > 1 and dropout > 0:
            kept = 0
            for i in range(m):
                if _unit(drop_base, i) >= dropout:
                    starts[kept], ends[kept] = starts[i], ends[i]
                    kept += 1
            if kept == 0:  # every word dropped: one stays, chosen at random
                starts[0], ends[0] = _nth_word(data, a, b, np.int64(_uniform(seed, choice_key, 0) * m))
                kept = 1
            m = kept
        i = 0
        while i < m - 1:
            if _unit(swap_base, i) < swap_prob:
                starts[i], starts[i + 1] = starts[i + 1], starts[i]
                ends[i], ends[i + 1] = ends[i + 1], ends[i]
                i += 2
            else:
                i += 1
        for i in range(m):
            if i:
                out_data[pos] = 32
                pos += 1
            for x in range(starts[i], ends[i]):  # a loop: faster than a slice copy for words this short
                out_data[pos] = data[x]
                pos += 1
        out_offsets[t + 1] = pos
    return pos


@njit(cache=True)
def _nth_word(data, a, b, n):
    """(start, end) of word n of data[a:b] split on single spaces."""
    s = a
    for i in range(a, b):
        if data[i] == 32:
            if n == 0:
                return s, i
            n -= 1
            s = i + 1
    return s, b
