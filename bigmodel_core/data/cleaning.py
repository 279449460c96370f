"""Text cleaning: pure functions used by the clean stage and, identically, by the served model."""

from __future__ import annotations

import html
import re

from bigmodel_core.config import CleanParams
from bigmodel_core.data.charset import WS_BUT_SPACE, WS_CLASS, normalize_key

__all__ = ["clean_array", "clean_text", "normalize_key"]

_TAG = re.compile(r"<[^<>]{0,200}>")
_WS = re.compile(f"[{WS_CLASS}]+")
# Entities whose '&' was lost upstream (AG News writes "#39;" and "quot;"): "#39;" and "quot;" not after '&'
# or a word character, i.e. (?<![&\w])#(\d{1,5}); and (?<![&\w])(quot|amp|lt|gt|nbsp|apos);. The look-behind
# is written after the first character, so the regex engine can skip to candidate characters (10x faster on
# IMDb reviews; tests/test_cleaning_quality.py checks both forms agree).
_BROKEN_NUMERIC = re.compile(r"#(?<![&\w]#)(\d{1,5});")
_BROKEN_NAMED = re.compile(
    r"((?:q(?<![&\w]q)uot|a(?<![&\w]a)mp|l(?<![&\w]l)t|g(?<![&\w]g)t|n(?<![&\w]n)bsp|a(?<![&\w]a)pos));"
)


def clean_text(text: str | None, p: CleanParams) -> str | None:
    """Clean one text; None stays None (validate decides what to do with it)."""
    if text is None:
        return None
    return _layout(_entities(text, p), p)


def _entities(t: str, p: CleanParams) -> str:
    """Steps 1-2: repair entities that lost their '&', then unescape HTML entities."""
    if p.repair_entities:
        t = _repair(t)
    if p.unescape_html:
        t = _unescape(t)
    return t


def _repair(t: str) -> str:
    return _BROKEN_NAMED.sub(r"&\1;", _BROKEN_NUMERIC.sub(r"&#\1;", t))


def _unescape(t: str) -> str:
    # Twice: "&amp;lt;b&amp;gt;" is a tag escaped two times.
    return html.unescape(html.unescape(t))


def _layout(t: str, p: CleanParams) -> str:
    """Steps 3-6: tags, whitespace, case, length."""
    if p.strip_html:
        t = _TAG.sub(" ", t)
    if p.normalize_whitespace:
        t = _WS.sub(" ", t).strip(" ")
    if p.lowercase:
        t = t.lower()
    if len(t) > p.max_chars:
        t = t[: p.max_chars]
    return t


# The same steps for a whole column at once (clean_array): steps 3-6 in one compiled pass (kernels.layout), the
# rest in Python on the texts that need it: html.unescape (texts with '&'), the entity repair (texts with
# something it could match, found by RE2) and, when lowercasing, non-ASCII texts (str.lower has special cases).
# Whitespace is charset.WHITESPACE everywhere (Python's \s is that set, spelled out for RE2, whose \s is ASCII).
# a run of whitespace other than one lone space (left as it is: faster)
_WS_RUN = rf" *[{WS_BUT_SPACE}][{WS_CLASS}]*| {{2,}}"
_ENTITY = r"#\p{Nd}{1,5};|(quot|amp|lt|gt|nbsp|apos);"  # what the repair patterns could match (\d is Nd)


def clean_array(texts, p: CleanParams):
    """clean_text over a pyarrow string array (or anything pa.array takes); returns a large_string array
    equal, text by text, to [clean_text(t, p) for t in texts]. Steps 1-2 (entities) run in Python on the
    texts that could need them; steps 3-6 in one compiled pass (kernels.layout), but lower-casing of
    non-ASCII texts, which runs in Python (str.lower has special cases)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    # steps 1-2 in Python, each on the texts it could change: the texts either could change, found in one compiled
    # pass over the bytes; among them those with an entity to repair, then those with an '&' to unescape
    if p.unescape_html or p.repair_entities:
        need = _entity_candidates(arr)
        where = pa.array(np.nonzero(need)[0], type=pa.int64())
        if len(where):
            part = arr.take(where)
            if p.repair_entities:
                part = _replace_rows(part, pc.fill_null(pc.match_substring_regex(part, _ENTITY), False), _repair)
            if p.unescape_html:
                part = _replace_rows(part, pc.fill_null(pc.match_substring(part, "&"), False), _unescape)
            arr = pc.replace_with_mask(arr, pa.array(need), part)
    fast = _layout_array(arr, p)
    if p.lowercase:  # str.lower() has special cases beyond ASCII: those texts take the Python path
        slow = pc.fill_null(pc.invert(pc.string_is_ascii(arr)), False)
        done = _replace_rows(arr, slow, lambda t: _layout(t, p))
        fast = pc.if_else(slow, done, fast)
    return fast


def _entity_candidates(arr):
    """Per text, whether it may hold an '&' or a broken entity (_ENTITY): one compiled pass over the bytes
    (kernels.entity_candidates), a superset that the steps then narrow with their exact patterns."""
    import numpy as np

    from bigmodel_core.data import kernels
    from bigmodel_core.data.columns import byte_view

    offsets, data = byte_view(arr)
    out = np.zeros(len(arr), dtype=bool)
    kernels.entity_candidates(data, offsets, out)
    return out


def _layout_array(arr, p: CleanParams):
    """Steps 3-6 over a large_string array in one compiled pass (kernels.layout); lower-casing there is
    ASCII only (clean_array redoes the other texts in Python). Nulls stay null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bigmodel_core.data import kernels
    from bigmodel_core.data.columns import byte_view

    offsets, data = byte_view(arr)
    out_offsets = np.empty(len(arr) + 1, dtype=np.int64)
    out_data = np.empty(max(1, int(offsets[-1] - offsets[0])) if len(arr) else 1, dtype=np.uint8)
    used = kernels.layout(
        data, offsets, p.strip_html, p.normalize_whitespace, p.lowercase, p.max_chars, out_data, out_offsets
    )
    done = pa.LargeStringArray.from_buffers(len(arr), pa.py_buffer(out_offsets), pa.py_buffer(out_data[:used]))
    return pc.if_else(pc.is_valid(arr), done, pa.scalar(None, pa.large_string())) if arr.null_count else done


def _replace_rows(arr, mask, fn):
    """arr with fn(text) in the rows where mask is true (nulls stay null)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    where = np.nonzero(mask.to_numpy(zero_copy_only=False))[0]
    if not len(where):
        return arr
    values = pc.take(arr, pa.array(where)).to_pylist()
    done = pa.array([None if t is None else fn(t) for t in values], type=pa.large_string())
    full = np.zeros(len(arr), dtype=bool)
    full[where] = True
    return pc.replace_with_mask(arr, pa.array(full), done)
