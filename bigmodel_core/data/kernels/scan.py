"""text_scan: one pass over a text column's bytes giving every text's word count, group key, length, flags and
MinHash signature, and the vocabulary (validate)."""

from __future__ import annotations

import numpy as np
from numba import njit

from bigmodel_core.data.hashing import _GOLD, _SEED  # the one definition of the constants
from bigmodel_core.data.kernels.base import (
    _C2,
    _CTL,
    _CTZ,
    _DEBRUIJN,
    _EF,
    _GT,
    _HIGH,
    _KEY_MUL,
    _KEY_SEED,
    _MARK,
    _ONE,
    C1_CONTROL,
    CASEFOLD,
    CONTROL,
    FOLDS_OTHERWISE,
    MARKUP,
    REPLACEMENT,
    SCAN_CLASS,
    _char_at,
    _feed,
    _load8,
    _lower8,
    _space_at,
    _specials8,
    mix,
)

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
