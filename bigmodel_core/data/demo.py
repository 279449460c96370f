"""The built-in demo corpus: deterministic, several classes, with dirt at known rates.

It exists so that `make run` works on a fresh machine with no data at all. The texts are
generated from small per-class vocabularies (plus shared filler words), so a model can learn
them but not perfectly. The dirt rates below are what the validate stage should find.
"""

from __future__ import annotations

import random

import pandas as pd

LABELS = ("sports", "business", "science", "travel")

#: Dirt injected into the corpus, as a share of the clean rows generated.
DIRT_RATES = {
    "duplicate": 0.04,  # an exact copy of an earlier row (same label)
    "empty_text": 0.01,  # empty or whitespace-only text
    "html": 0.05,  # HTML tags and entities around the text
    "long": 0.005,  # text repeated past clean.max_chars
    "unknown_label": 0.01,  # a label outside LABELS
    "missing_label": 0.01,  # no label at all
    "conflicting_labels": 0.01,  # an earlier text again, with a different label
    "short": 0.005,  # one character
    "control_chars": 0.005,  # a bell or an escape character inside the text
    "near_duplicate": 0.01,  # an earlier text with one more word (same label)
}

_TOPIC_WORDS = {
    "sports": "match goal striker league coach season playoff tournament referee stadium score team "
    "championship defender injury transfer fans victory penalty inning",
    "business": "market shares profit revenue investors merger quarter earnings bank stock inflation "
    "startup ceo acquisition dividend economy retail prices budget debt",
    "science": "researchers study cells telescope physics climate experiment genome quantum species "
    "laboratory vaccine particle orbit data molecule fossil neurons theory",
    "travel": "flight hotel beach passport island museum itinerary tourists cruise airport luggage "
    "resort hiking visa train guidebook sunset village journey",
}
_SHARED = (
    "the a new report says on monday after week this year officials local people more than "
    "about big record first again today early late plans announced latest"
).split()
_TEMPLATES = (
    "{a} {b} as {c} {d} {s1}",
    "{s1} {a} {s2} {b} {c}",
    "{s1} {s2} {a} and {b} {c} {d}",
    "{a} {s1} {b} {s2} {c} {d} {s3}",
    "why {a} {b} matter {s1} {c}",
)
_UNKNOWN = ("politics", "misc", "SPORTS ", "sprots")
_ONE_CHAR = "abcdefghijklmnopqrstuvwxyz0123456789?!"  # distinct, so they are not duplicates of one another


def generate(rows: int = 3000, seed: int = 7) -> pd.DataFrame:
    """Return `rows` rows: columns text, label (may be None) and `dirt`, which says what was injected."""
    rng = random.Random(seed)
    words = {k: v.split() for k, v in _TOPIC_WORDS.items()}
    clean: list[tuple[str, str]] = []
    dirt_counts = {kind: max(1, round(rows * rate)) for kind, rate in DIRT_RATES.items()}
    n_clean = rows - sum(dirt_counts.values())
    if n_clean < 4 * len(LABELS):
        raise ValueError(f"demo corpus needs more rows than {rows}")

    def pick(label: str) -> str:
        # 15% of the topic words come from another class: the task is learnable but not trivial.
        if rng.random() < 0.15:
            return rng.choice(words[rng.choice(LABELS)])
        return rng.choice(words[label])

    for i in range(n_clean):
        label = LABELS[i % len(LABELS)]
        tpl = rng.choice(_TEMPLATES)
        text = tpl.format(
            a=pick(label),
            b=pick(label),
            c=pick(label),
            d=pick(label),
            s1=rng.choice(_SHARED),
            s2=rng.choice(_SHARED),
            s3=rng.choice(_SHARED),
        )
        text = f"{text} {rng.randint(1, 999)}"  # makes accidental exact duplicates rare
        clean.append((text[0].upper() + text[1:], label))

    records: list[dict] = [{"text": t, "label": lab, "dirt": "none"} for t, lab in clean]
    n = len(clean)

    def count(kind: str) -> int:
        return dirt_counts[kind]

    for _ in range(count("duplicate")):
        t, lab = clean[rng.randrange(n)]
        records.append({"text": t, "label": lab, "dirt": "duplicate"})
    for i in range(count("empty_text")):
        records.append({"text": ["", "   ", "\t\n"][i % 3], "label": rng.choice(LABELS), "dirt": "empty_text"})
    for _ in range(count("html")):
        t, lab = clean[rng.randrange(n)]
        records.append({"text": f"<p><b>{t}</b> &amp; more &#39;news&#39;</p>", "label": lab, "dirt": "html"})
    for _ in range(count("long")):
        t, lab = clean[rng.randrange(n)]
        records.append({"text": " ".join([t] * 400), "label": lab, "dirt": "long"})
    for _ in range(count("unknown_label")):
        t, _l = clean[rng.randrange(n)]
        records.append({"text": t + " extra", "label": rng.choice(_UNKNOWN), "dirt": "unknown_label"})
    for _ in range(count("missing_label")):
        t, _l = clean[rng.randrange(n)]
        records.append({"text": t + " again", "label": None, "dirt": "missing_label"})
    for _ in range(count("conflicting_labels")):
        t, lab = clean[rng.randrange(n)]
        other = rng.choice([x for x in LABELS if x != lab])
        records.append({"text": t, "label": other, "dirt": "conflicting_labels"})

    for i in range(count("short")):
        records.append({"text": _ONE_CHAR[i % len(_ONE_CHAR)], "label": rng.choice(LABELS), "dirt": "short"})
    for i in range(count("control_chars")):
        t, lab = clean[rng.randrange(n)]
        cut = len(t) // 2
        records.append(
            {"text": t[:cut] + ("\x07" if i % 2 else "\x1b[0m") + t[cut:], "label": lab, "dirt": "control_chars"}
        )

    for _ in range(count("near_duplicate")):
        t, lab = clean[rng.randrange(n)]
        records.append({"text": t + " indeed", "label": lab, "dirt": "near_duplicate"})

    rng.shuffle(records)
    return pd.DataFrame.from_records(records, columns=["text", "label", "dirt"])
