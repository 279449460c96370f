"""One cleaning implementation for training and serving: the clean stage's column path (cleaning.clean_array),
the per-text path (clean_text) and the served model's (Predictor.clean) give identical texts, on a synthetic
tricky sample (always) and on the real datasets (when ../shared/datasets is there); and that implementation
equals the readable definition of the steps below."""

from __future__ import annotations

import html
import random
import re
from types import SimpleNamespace

import pytest

from bigmodel_core.config import CleanParams
from bigmodel_core.data.cleaning import clean_array, clean_text
from bigmodel_core.models.bundle import Predictor
from tests.conftest import DATASETS, REPO, needs_datasets
from tests.test_vectorized_text import PIECES, _samples


def definition(t: str | None, p: CleanParams) -> str | None:
    """cleaning's steps written plainly, one text at a time, with Python's own classes (\\s, \\d)."""
    if t is None:
        return None
    if p.repair_entities:
        t = re.sub(r"(?<![&\w])#(\d{1,5});", r"&#\1;", t)
        t = re.sub(r"(?<![&\w])(quot|amp|lt|gt|nbsp|apos);", r"&\1;", t)
    if p.unescape_html:
        t = html.unescape(html.unescape(t))
    if p.strip_html:
        t = re.sub(r"<[^<>]{0,200}>", " ", t)
    if p.normalize_whitespace:
        t = re.sub(r"\s+", " ", t).strip()
    if p.lowercase:
        t = t.lower()
    return t[: p.max_chars]


def served(texts: list, p: CleanParams) -> list[str]:
    """What the served model scores: Predictor.clean with these params."""
    return Predictor.clean(SimpleNamespace(clean_p=p), texts)


TRICKY = [
    "Tom&amp;Jerry&#39;s <b>show</b> &lt;i&gt;x&lt;/i&gt; &amp;lt;b&amp;gt; &#x263A; &nbsp;&copy; &bogus; & ;",
    "Haiti #39;s straits quot;x quot; AT&T x#39; nbsp;y &#١٢٣; #١٢;",
    "<p class='x'>para</p><br /><br/>next <a href=\"u\">link</a> 1 < 2 > 0 <" + "a" * 250 + ">",
    "ctl\x00\x01\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f\x80\x9f end",
    "nbsp\u00a0thin\u2009em\u2003ideo\u3000nel\x85ls\u2028ps\u2029narrow\u202fmath\u205fogham\u1680",
    "zero\u200bwidth\u200cjoin\u200dbom\ufeffword\u2060soft\u00adhy",
    "line one\r\nline two\r\n\r\n\tindented\rcr only\n",
    "İSTANBUL ΟΔΟΣ Straße ẞ Ǆ ﬁ ÉCOLE ＦＵＬＬ 😀 cafe\u0301",
    " \t\n ",
    "",
    ("A long review with <br /> tags &amp; entities, CRLF\r\n and  doubled  spaces. " * 400)[:30_000],
    ("É" * 5000) + " tail",
    None,
]


@pytest.mark.parametrize("combo", range(8))
def test_column_per_text_and_served_paths_agree_on_tricky_texts(combo):
    p = CleanParams(lowercase=bool(combo & 1), strip_html=bool(combo & 2), normalize_whitespace=bool(combo & 4),
                    unescape_html=combo < 6, repair_entities=combo % 3 != 0, max_chars=[7, 4000, 50_000][combo % 3])
    column = clean_array(TRICKY, p).to_pylist()
    assert column == [clean_text(t, p) for t in TRICKY]
    assert served(TRICKY, p) == ["" if t is None else t for t in column]
    assert column == [definition(t, p) for t in TRICKY]


@pytest.mark.parametrize("combo", range(8))
def test_the_implementation_equals_the_definition(combo):
    """The compiled steps against the plain definition, on adversarial samples and long prose."""
    p = CleanParams(lowercase=bool(combo & 1), strip_html=bool(combo & 2), normalize_whitespace=bool(combo & 4),
                    unescape_html=combo < 6, repair_entities=combo % 3 != 0, max_chars=[7, 25, 2000][combo % 3])
    rng = random.Random(combo)
    prose = ["word ", "Words ", "a ", "the end. ", "x", "  ", "A  B ", "don't ", "1999 "]
    texts = _samples(combo, 3000) + ["".join(rng.choice(prose) if rng.random() < 0.9 else rng.choice(PIECES)
                                             for _ in range(300)) for _ in range(300)]
    got = clean_array(texts, p).to_pylist()
    assert [(t, g) for t, g in zip(texts, got) if g != definition(t, p)] == []


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    """Every text of IMDb, AG News and SMS Spam (68,174), read as the examples' params read them."""
    import pandas as pd

    from bigmodel_core.config import load_params
    from bigmodel_core.data.formats import read_source

    texts: list[str] = []
    for name in ("imdb", "ag_news", "sms_spam"):
        params = load_params(REPO / "examples" / f"{name}-transformer.yaml")
        df = pd.concat([read_source(s, REPO) for s in params.data.sources], ignore_index=True)
        texts += df["text"].dropna().astype(str).tolist()
    return texts


@needs_datasets
@pytest.mark.datasets
@pytest.mark.stage
@pytest.mark.parametrize("lowercase", [False, True])
def test_real_dataset_texts_clean_alike_on_every_path(real_texts, lowercase):
    """Every real text through the column path, one at a time and through the served model's cleaning:
    identical output, equal to the definition."""
    assert DATASETS.exists() and len(real_texts) == 68_174
    p = CleanParams(lowercase=lowercase)
    column = clean_array(real_texts, p).to_pylist()
    assert column == [clean_text(t, p) for t in real_texts]
    assert column == served(real_texts, p)
    assert column == [definition(t, p) for t in real_texts]
    assert sum(c != t for c, t in zip(column, real_texts)) > 10_000  # the cleaning does change real texts
