"""text_scan: one pass over a text column's UTF-8 bytes giving every text's word count, group key and flags, and for
the wanted texts their MinHash signature and words counted (validate). Kept compiled: datasketch's MinHash takes 28x
its CPU time for the signatures alone (benchmarks/minhash_datasketch.py --rows 20000)."""

import numpy as np
from numba import njit

from bigmodel_core.data import charset
from bigmodel_core.data.hashing import _GOLD, _SEED, KEY_MUL, KEY_SEED  # the one definition of the constants
from bigmodel_core.data.kernels.base import SPACE, char_at, mix

#: a text's flags: a control character (charset.CONTROL); U+FFFD; '<' + ASCII letter or '/', later '>', or '&' + one or
#: '#', later ';' (a superset of the HTML rule's matches: it runs on those); a character case-folded otherwise
CONTROL, REPLACEMENT, MARKUP, CASEFOLD = 1, 2, 4, 8
_LT, _AMP, _GT, _SEMI = 16, 32, 64, 128  # while a text is read: a tag or entity may have started; '>' and ';'
CLASS = np.zeros(0xA0, dtype=np.uint8)  # per code point below 0xA0: CONTROL or its part in MARKUP
CLASS[list(charset.CONTROL)] = CONTROL
CLASS[[0x3C, 0x26, 0x3E, 0x3B]] = _LT, _AMP, _GT, _SEMI
_KEY_SEED, _KEY_MUL, _FOLDS_OTHERWISE = np.uint64(KEY_SEED), np.uint64(KEY_MUL), np.uint32(charset.FOLDS_OTHERWISE)


@njit(cache=True, inline="always")
def _utf8_byte(cp, n, x):
    """Byte x of the n-byte UTF-8 encoding of cp."""
    if x == 0:
        return cp if n == 1 else (0xF00 >> n) & 0xFF | (cp >> (6 * (n - 1)))
    return 0x80 | ((cp >> (6 * (n - 1 - x))) & 0x3F)


@njit(cache=True)
def text_scan(
    data, offsets, want, k, muls, probes, sig, words, key_hi, key_lo, flags, vocab, table, slots, store, state, fold_map
):
    """For every text t, read as its words (str.split()) lower-cased by fold_map (charset.fold_table(); empty: as
    they are): its word count (words[t]), the key of its words (key_hi[t], key_lo[t]: hashing.text_key), its flags
    (flags[t]); for the texts with want[t], the densified one-permutation MinHash signature of their k-word shingles
    (sig[t], see minhash) and, with vocab, their words counted in an open-addressing table kept from call to call
    (table: per slot, word hash (0: free) and count; slots: per distinct word, in order of appearance, its slot, the
    offset of its bytes in store and its length). state = (first text, slots taken, store bytes taken, slots needed,
    store bytes needed): before a wanted text whose words might fill the table past half, or the store, it writes
    state and returns False; the caller makes room (grown, a larger store) and calls again. True: all done."""
    bins, empty, mask = sig.shape[1], np.uint32(0xFFFFFFFF), table.shape[0] - 1
    n_used, stored = state[1], state[2]
    ring = np.zeros(16, dtype=np.uint64)
    raw = np.empty(bins, dtype=np.uint32)
    for t in range(state[0], offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        on, count = want[t], want[t] and vocab
        need = n_used + (b - a + 1) // 2 + 1  # lower-casing makes a character 1.5x longer at most
        if count and (2 * need > table.shape[0] or stored + (b - a) * 3 // 2 > store.size):
            state[0], state[1], state[2], state[3], state[4] = t, n_used, stored, need, stored + (b - a) * 3 // 2
            return False
        raw[:] = empty
        n, fl, inword, wl, i, khi = 0, 0, False, 0, a, _KEY_SEED
        h = acc = shift = klo = np.uint64(0)
        while i <= b:
            cp, m = (-2, 1) if i == b else char_at(data, i, b)
            c = CLASS[cp] if 0 <= cp < CLASS.size else REPLACEMENT if cp == 0xFFFD else 0
            if c:
                d = data[i + 1] if i + 1 < b else 0
                if c & (_LT | _AMP) and (0x61 <= d | 0x20 <= 0x7A or d == (0x2F if c == _LT else 0x23)):
                    fl |= c
                elif (c & _GT and fl & _LT) or (c & _SEMI and fl & _AMP):
                    fl |= MARKUP
                fl |= c & (CONTROL | REPLACEMENT)
            if i == b or (0 <= cp < SPACE.size and SPACE[cp]):
                if inword:  # the word ends: hashing.word_hash, then into the key, the vocabulary, the shingles
                    if shift:
                        h = mix(h ^ acc)
                    h = mix(h + np.uint64(wl) * _GOLD)
                    khi, klo = mix(khi ^ h), klo * _KEY_MUL + h
                    if count:
                        key, slot = np.int64(h | np.uint64(1)), np.int64(h >> np.uint64(1)) & mask  # 0: a free slot
                        while table[slot, 0] != 0 and table[slot, 0] != key:
                            slot = (slot + 1) & mask
                        if table[slot, 0] == 0:
                            table[slot, 0] = key
                            slots[n_used, 0], slots[n_used, 1], slots[n_used, 2] = slot, stored, wl
                            stored, n_used = stored + wl, n_used + 1
                        table[slot, 1] += 1
                    if on:
                        ring[n & 15] = h
                        if n >= k - 1:  # the shingle of words n-k+1 .. n
                            _add_shingle(ring, n - k + 1, k, k, muls, raw)
                    n += 1
                inword = False
                i += m
                continue
            if not inword:
                h, acc, shift, wl, inword = _SEED, np.uint64(0), np.uint64(0), 0, True
            low = cp
            if 0 <= cp < fold_map.size:
                low = np.int64(fold_map[cp] & 0x1FFFFF)
                if fold_map[cp] & _FOLDS_OTHERWISE:
                    fl |= CASEFOLD
            nb = m if low == cp else 1 if low < 0x80 else 2 if low < 0x800 else 3 if low < 0x10000 else 4
            for x in range(nb):  # the bytes as read into the word's hash (eight to a chunk) and the store
                v = data[i + x] if low == cp else _utf8_byte(low, nb, x)
                acc |= np.uint64(v) << shift
                shift += np.uint64(8)
                if shift == np.uint64(64):
                    h, acc, shift = mix(h ^ acc), np.uint64(0), np.uint64(0)
                if count:
                    store[stored + wl] = v
                wl += 1
            i += m
        words[t], flags[t] = n, fl & 15
        nn = np.uint64(n) * _GOLD
        key_hi[t], key_lo[t] = mix(khi + nn), np.uint16(mix(klo + nn) >> np.uint64(48))
        if not on:
            continue
        if n == 0:  # no words, no shingles: a signature of its own that matches nothing
            for j in range(bins):
                sig[t, j] = np.uint32(mix(np.uint64(t * bins + j) + np.uint64(1 << 62)) >> np.uint64(32))
            continue
        if n < k:  # a text of fewer than k words is one shingle
            _add_shingle(ring, 0, n, k, muls, raw)
        smallest = raw.min()
        for j in range(bins):  # minhash._densify: an empty bin borrows from the bin probe p names, p = 0, 1, ...
            v = raw[j]
            if v == empty:
                v = smallest
                for p in range(probes.shape[0]):
                    if raw[probes[p, j]] != empty:
                        v = np.uint32(mix(np.uint64(raw[probes[p, j]]) + np.uint64(p + 1)) >> np.uint64(32))
                        break
            sig[t, j] = v
    state[0], state[1], state[2] = offsets.size - 1, n_used, stored
    return True


@njit(cache=True, inline="always")
def _add_shingle(ring, s, have, k, muls, raw):
    """The shingle of words s .. s+k-1 (the last k - have of them past the text's end: 0) into raw: its top 7 bits
    pick the bin, the next 32 are the value."""
    sh = np.uint64(0)
    for j in range(k):
        sh = (sh + (ring[(s + j) & 15] if j < have else np.uint64(0)) + np.uint64(j + 1)) * muls[j]
    sh = mix(sh)
    bn, v = np.int64(sh >> np.uint64(57)), np.uint32((sh >> np.uint64(25)) & np.uint64(0xFFFFFFFF))
    if v < raw[bn]:
        raw[bn] = v


@njit(cache=True)
def grown(table, slots, n_used):
    """The table at twice the size, its entries moved (slots follow), and room for as many more slots."""
    new, more = np.zeros((2 * table.shape[0], 2), dtype=np.int64), np.zeros((table.shape[0], 3), dtype=np.int64)
    more[:n_used] = slots[:n_used]
    for u in range(n_used):
        slot = np.int64(np.uint64(table[more[u, 0], 0]) >> np.uint64(1)) & (new.shape[0] - 1)
        while new[slot, 0] != 0:
            slot = (slot + 1) & (new.shape[0] - 1)
        new[slot], more[u, 0] = table[more[u, 0]], slot
    return new, more
