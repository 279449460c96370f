"""What the compiled loops share: hashing.mix for one uint64, UTF-8 decoding, the whitespace table."""

import numpy as np
from numba import njit

from bigmodel_core.data import charset
from bigmodel_core.data.hashing import _M1, _M2  # the one definition of the constants

#: per code point up to the last whitespace character: 1 where str.split() splits (charset.WHITESPACE)
SPACE = np.zeros(max(charset.WHITESPACE) + 1, dtype=np.uint8)
SPACE[list(charset.WHITESPACE)] = 1


@njit(cache=True, inline="always")
def mix(x):
    """hashing.mix for one uint64."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def char_at(data, i, end):
    """(code point, length in bytes) of the UTF-8 character at data[i]; (-1, 1) where no whole character starts."""
    c = np.int64(data[i])
    n = 1 if c < 0x80 else 2 if 0xC0 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF8 else 0
    if n == 0 or i + n > end:
        return -1, 1
    if n > 1:
        c &= 0xFF >> (n + 1)
        for x in range(i + 1, i + n):
            if data[x] & 0xC0 != 0x80:
                return -1, 1
            c = (c << 6) | (data[x] & 0x3F)
    return c, n
