"""augment's word-dropout and swap variants, from hashing.streams' numbers."""

from __future__ import annotations

import numpy as np
from numba import njit

from bigmodel_core.data.hashing import _GOLD  # the one definition of the constants
from bigmodel_core.data.kernels.base import _CTZ, _DEBRUIJN, _L8, _ONE, _load8, _zero8, mix


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
