"""Cleaning's compiled pass: entity candidates and the layout steps (tags, whitespace, lower-casing, the cut) of
cleaning.clean_array."""

from __future__ import annotations

import numpy as np
from numba import njit

from bigmodel_core.data import charset
from bigmodel_core.data.kernels.base import _H8, _L8, _M7, SCAN_CLASS, _load8, _lower8, _space_at, _zero8

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
