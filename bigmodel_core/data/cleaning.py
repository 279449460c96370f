"""Text cleaning: pure functions used by the clean stage and, identically, by the served model."""

from __future__ import annotations

import html
import re

from bigmodel_core.config import CleanParams

_TAG = re.compile(r"<[^<>]{0,200}>")
_WS = re.compile(r"\s+")
# Entities whose '&' was lost upstream (AG News writes "#39;" and "quot;").
_BROKEN_NUMERIC = re.compile(r"(?<![&\w])#(\d{1,5});")
_BROKEN_NAMED = re.compile(r"(?<![&\w])(quot|amp|lt|gt|nbsp|apos);")


def clean_text(text: str | None, p: CleanParams) -> str | None:
    """Clean one text; None stays None (validate decides what to do with it)."""
    if text is None:
        return None
    t = text
    if p.repair_entities:
        t = _BROKEN_NUMERIC.sub(r"&#\1;", t)
        t = _BROKEN_NAMED.sub(r"&\1;", t)
    if p.unescape_html:
        # Twice: "&amp;lt;b&amp;gt;" is a tag escaped two times.
        t = html.unescape(html.unescape(t))
    if p.strip_html:
        t = _TAG.sub(" ", t)
    if p.normalize_whitespace:
        t = _WS.sub(" ", t).strip()
    if p.lowercase:
        t = t.lower()
    if len(t) > p.max_chars:
        t = t[: p.max_chars]
    return t


def normalize_key(text: str) -> str:
    """What makes two texts 'the same' for duplicate, conflict and split purposes."""
    return _WS.sub(" ", text.casefold()).strip()
