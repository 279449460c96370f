"""Cleaning's compiled pass: tags and whitespace (steps 3-4 of cleaning.clean_array)."""

from numba import njit

from bigmodel_core.data.kernels.base import SPACE, char_at


@njit(cache=True)
def layout(data, offsets, strip_html, collapse, out_data, out_offsets):
    """For every text, in one pass over its bytes: a tag ('<', at most 200 characters other than '<' and '>', '>',
    left to right as re.sub finds them) becomes a space; with collapse, every run of whitespace (charset.WHITESPACE)
    becomes one space and the ends are stripped. Writes the texts to (out_data, out_offsets), never longer than the
    input; returns the bytes written. Kept compiled for now: the same steps as pyarrow RE2 calls took 1.1x its CPU
    (benchmarks/clean_layout.py --rows 200000) to 1.7x (264 MB of corpus texts); clean is at 2.9x of its floor."""
    pos, out_offsets[0] = 0, 0
    for t in range(offsets.size - 1):
        a, b = offsets[t], offsets[t + 1]
        pending, started, i = False, False, a
        while i < b:
            m, space = 1, 0
            if 0x20 < data[i] < 0x80 and data[i] != 0x3C and not pending:  # most bytes: as they are
                out_data[pos], started = data[i], True
                pos, i = pos + 1, i + 1
                continue
            if strip_html and data[i] == 0x3C:
                j, n = i + 1, 0
                while j < b and data[j] != 0x3E and data[j] != 0x3C and n <= 200:
                    n += (data[j] & 0xC0) != 0x80
                    j += 1
                if j < b and data[j] == 0x3E and n <= 200:
                    m = space = j + 1 - i
            if not space and collapse:
                cp, m = char_at(data, i, b)
                space = m if 0 <= cp < SPACE.size and SPACE[cp] else 0
            if space and collapse:
                pending = True
            else:
                if space or (pending and started):  # a tag (without collapse), or the space a whitespace run left
                    out_data[pos], pos = 32, pos + 1
                if not space:
                    pending, started = False, True
                    for x in range(m):
                        out_data[pos + x] = data[i + x]
                    pos += m
            i += m
        out_offsets[t + 1] = pos
    return pos
