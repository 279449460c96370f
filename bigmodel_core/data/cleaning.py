"""Text cleaning: one implementation (clean_array, over a column) used by the clean stage, by the served model
(models.bundle.Predictor.clean) and, through the split files clean wrote, by evaluate; clean_text is the same
function on one text.

The steps, in order (each switched by CleanParams):
1. repair entities that lost their '&' upstream (AG News writes "#39;" and "quot;"): '#' and one to five
   decimal digits then ';', or one of charset.REPAIRED_ENTITIES then ';', not after '&' or a word character;
2. unescape HTML entities (html.unescape, twice: "&amp;lt;b&amp;gt;" is a tag escaped two times);
3. a tag ('<', at most 200 characters other than '<' and '>', '>', left to right) becomes a space;
4. every run of whitespace (charset.WHITESPACE) becomes one space, the ends are stripped;
5. lower-case (str.lower);
6. cut to max_chars characters.
Steps 1-2 run in Python on the texts that could need them (found by one RE2 pass: pyarrow); steps 3-4 in one
compiled pass (kernels.layout), steps 5-6 by pyarrow, which lower-cases ASCII: texts with other characters are
lower-cased and cut in Python (str.lower has special cases such as final sigma and 'İ', which becomes two
characters).
"""

from __future__ import annotations

import html
import re

from bigmodel_core.config import CleanParams
from bigmodel_core.data.charset import REPAIRED_ENTITIES, normalize_key

__all__ = ["clean_array", "clean_text", "normalize_key"]

# Step 1 as Python patterns: (?<![&\w])#(\d{1,5}); and (?<![&\w])(quot|amp|...);. The look-behind is written
# after the first character, so the regex engine can skip to candidate characters (10x faster on IMDb
# reviews; tests/test_cleaning_quality.py checks both forms agree).
_BROKEN_NUMERIC = re.compile(r"#(?<![&\w]#)(\d{1,5});")
_BROKEN_NAMED = re.compile("((?:" + "|".join(rf"{n[0]}(?<![&\w]{n[0]}){n[1:]}" for n in REPAIRED_ENTITIES) + "));")
# what the repair patterns could match, for RE2 (Python's \d is Unicode Nd)
_ENTITY = r"#\p{Nd}{1,5};|(" + "|".join(REPAIRED_ENTITIES) + ");"
_NO_LIMIT = 2**62  # max_chars for _layout_array when Python cuts the text after lower-casing it


def clean_text(text: str | None, p: CleanParams) -> str | None:
    """Clean one text (clean_array of a one-text column); None stays None (validate decides what to do)."""
    if text is None:
        return None
    return clean_array([text], p)[0].as_py()


def _repair(t: str) -> str:
    return _BROKEN_NAMED.sub(r"&\1;", _BROKEN_NUMERIC.sub(r"&#\1;", t))


def _unescape(t: str) -> str:
    return html.unescape(html.unescape(t))


def clean_array(texts, p: CleanParams):
    """The cleaned texts (the module's steps) of a pyarrow string array (or anything pa.array takes), as a
    large_string array; nulls stay null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    # steps 1-2 in Python, each on the texts it could change: the texts either could change, found in one RE2
    # pass; among them those with an entity to repair, then those with an '&' to unescape
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
    fast = _layout_array(arr, p, p.lowercase, p.max_chars)
    if p.lowercase:  # str.lower() has special cases beyond ASCII: those texts are lower-cased and cut in Python
        slow = pc.fill_null(pc.invert(pc.string_is_ascii(arr)), False)
        where = np.nonzero(slow.to_numpy(zero_copy_only=False))[0]
        if len(where):
            laid = _layout_array(arr.take(pa.array(where, type=pa.int64())), p, False, _NO_LIMIT).to_pylist()
            done = pa.array([t.lower()[: p.max_chars] for t in laid], type=pa.large_string())
            fast = pc.replace_with_mask(fast, slow, done)
    return fast


def _entity_candidates(arr):
    """Per text, whether it holds an '&' or a broken entity (_ENTITY): the texts steps 1-2 could change."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.match_substring_regex(arr, "&|" + _ENTITY), False).to_numpy(zero_copy_only=False)


def _layout_array(arr, p: CleanParams, lower: bool, max_chars: int):
    """Steps 3-6 over a large_string array: tags and whitespace in one compiled pass (kernels.layout), then ASCII
    lower-casing with lower (clean_array lower-cases the other texts in Python) and the cut (pyarrow). Nulls stay
    null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bigmodel_core.data.columns import byte_view
    from bigmodel_core.data.kernels.layout import layout

    if p.strip_html or p.normalize_whitespace:
        offsets, data = byte_view(arr)
        out_offsets = np.empty(len(arr) + 1, dtype=np.int64)
        out_data = np.empty(max(1, int(offsets[-1] - offsets[0])) if len(arr) else 1, dtype=np.uint8)
        used = layout(data, offsets, p.strip_html, p.normalize_whitespace, out_data, out_offsets)
        done = pa.LargeStringArray.from_buffers(len(arr), pa.py_buffer(out_offsets), pa.py_buffer(out_data[:used]))
        arr = pc.if_else(pc.is_valid(arr), done, pa.scalar(None, pa.large_string())) if arr.null_count else done
    if lower:
        arr = pc.ascii_lower(arr)
    return arr if max_chars >= _NO_LIMIT else pc.utf8_slice_codeunits(arr, 0, max_chars)


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
