"""The characters text handling is defined by, each set written once: whitespace, control characters, and
the pinned case folding of group keys. Cleaning (Python and compiled), the text rules, the scan and the key
all take their sets from here.

Group keys (quality.group_key) decide the split, so their normalisation must not move when a library is
upgraded. It is pinned, versioned by KEY_VERSION:
- ASCII: 'A'-'Z' become 'a'-'z', nothing else changes (a rule in code, no table);
- every other character below FOLD_LIMIT is case-folded by the committed table `casefold.tsv` (full case
  folding, one character to up to three, as Python 3.11's str.casefold did on Unicode 14.0 when the table was
  written; above FOLD_LIMIT nothing folds). No Unicode normalisation: 'é' and 'e' + U+0301 stay apart;
- words are split at WHITESPACE (below), and the key is hashing.text_key of the words.
The table was written once by `python -m bigmodel_core.data.charset` (main() below, kept so it can be
audited); running it again on a newer Python or pyarrow would change keys, so a change to the table goes with
a new KEY_VERSION. tests/test_split_keys.py pins the keys and splits of a multilingual sample.

The same file holds, per character, its lower case as pyarrow's utf8_lower gave it then (one character to
one): the scan reads words lower-cased by it (fold_table), the words of the MinHash signatures and the
data profile.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

#: the version of the group-key definition (normalisation, word split and hash); split reports record it
KEY_VERSION = 1

#: whitespace: what Python's str.split() splits on (str.isspace on Unicode 14.0), pinned here
WHITESPACE: tuple[int, ...] = (
    *range(0x09, 0x0E),  # tab, line feed, vertical tab, form feed, carriage return
    *range(0x1C, 0x20),  # file, group, record and unit separators
    0x20,
    0x85,
    0xA0,
    0x1680,
    *range(0x2000, 0x200B),
    0x2028,
    0x2029,
    0x202F,
    0x205F,
    0x3000,
)

#: control characters (the control_chars rule): C0 but tab, line feed and carriage return, DEL, and C1
CONTROL: tuple[int, ...] = (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))

#: the named entities cleaning repairs when their '&' was lost ("quot;" -> "&quot;"), lower-case ASCII
REPAIRED_ENTITIES: tuple[str, ...] = ("quot", "amp", "lt", "gt", "nbsp", "apos")

#: the pinned table covers the code points below this; none above it had a lower case or a case folding
FOLD_LIMIT = 0x20000
#: files this module reads beside itself: DVC lists them with the code of every stage that imports it (dag.py)
DATA_FILES = ("casefold.tsv",)
_TABLE = Path(__file__).with_name(DATA_FILES[0])


def char_class(cps) -> str:
    """The body of a regex character class matching exactly the code points cps, valid for Python's re and
    for RE2 alike (ASCII as \\xNN escapes, others as the characters themselves, runs as ranges)."""

    def one(c: int) -> str:
        return f"\\x{c:02x}" if c < 0x80 else chr(c)

    runs: list[list[int]] = []
    for c in sorted(set(cps)):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in runs)


#: WHITESPACE and CONTROL as character-class bodies (for re and RE2)
WS_CLASS = char_class(WHITESPACE)
CONTROL_CLASS = char_class(CONTROL)
#: whitespace but the plain space (RE2 patterns treat a lone space apart: faster)
WS_BUT_SPACE = char_class(c for c in WHITESPACE if c != 0x20)
#: a run of whitespace other than one lone space (left as it is: faster), for RE2 (columns.split_words)
WS_RUN_RE2 = rf" *[{WS_BUT_SPACE}][{WS_CLASS}]*| {{2,}}"
_WS_RUN = re.compile(f"[{WS_CLASS}]+")


@functools.cache
def folds() -> tuple[dict[int, int], dict[int, str]]:
    """The committed table: (lower, fold) for the non-ASCII code points where either differs from the code
    point: lower[c] the one code point utf8_lower gave, fold[c] the case folding (one to three characters)."""
    lower: dict[int, int] = {}
    fold: dict[int, str] = {}
    for line in _TABLE.read_text(encoding="ascii").splitlines():
        if not line or line.startswith("#"):
            continue
        cp, low, folded = line.split("\t")
        c = int(cp, 16)
        if int(low, 16) != c:
            lower[c] = int(low, 16)
        to = "".join(chr(int(x, 16)) for x in folded.split(" "))
        if to != chr(c):
            fold[c] = to
    return lower, fold


#: the bit of a fold_table() entry marking a character whose case folding (casefold) is not its lower case
FOLDS_OTHERWISE = 1 << 31


@functools.cache
def fold_table():
    """A numpy uint32 array: for each code point below FOLD_LIMIT, the code point it is lower-cased to (one for one:
    pyarrow's utf8_lower as the committed table records it; 'A'-'Z' by the ASCII rule), with FOLDS_OTHERWISE where
    its pinned case folding (casefold) is something else (ß -> ss, ς -> σ, Cherokee, ligatures: under 300
    characters). Read from the table, not from the installed libraries, so a library upgrade changes neither the
    words the scan reads (kernels.scan) nor the group keys."""
    import numpy as np

    lower, fold = folds()
    table = np.arange(FOLD_LIMIT, dtype=np.uint32)
    for c, low in lower.items():
        table[c] = low
    for c in set(lower) | set(fold):
        if fold.get(c, chr(c)) != chr(lower.get(c, c)):
            table[c] |= FOLDS_OTHERWISE
    table[0x41:0x5B] += 32
    return table


@functools.cache
def _translation() -> dict[int, str]:
    table = {c: chr(c + 32) for c in range(0x41, 0x5B)}  # ASCII: the rule, no table
    table.update(folds()[1])
    return table


def casefold(text: str) -> str:
    """The text case-folded by the pinned rule (the module's docstring)."""
    return text.translate(_translation())


def normalize_key(text: str) -> str:
    """What makes two texts 'the same' for duplicate, conflict and split purposes: the pinned case folding,
    every run of WHITESPACE one space, no space at the ends."""
    return _WS_RUN.sub(" ", casefold(text)).strip(" ")


def main() -> None:  # pragma: no cover - run once, by hand, to write the table (see the module's docstring)
    """Write casefold.tsv from the running Python's str.casefold and pyarrow's utf8_lower."""
    import sys
    import unicodedata

    import pyarrow as pa
    import pyarrow.compute as pc

    cps = [c for c in range(0x80, FOLD_LIMIT) if not 0xD800 <= c < 0xE000]  # surrogates are not UTF-8
    text = "".join(map(chr, cps))
    lowered = pc.utf8_lower(pa.array([text], type=pa.large_string()))[0].as_py()
    assert len(lowered) == len(text), "utf8_lower must map code points one for one"
    rest = "".join(chr(c) for c in range(FOLD_LIMIT, 0x110000) if not 0xD800 <= c < 0xE000)
    assert rest.casefold() == rest and pc.utf8_lower(pa.array([rest]))[0].as_py() == rest
    assert all(
        chr(c).casefold() == chr(c).lower() == (chr(c + 32) if 0x41 <= c <= 0x5A else chr(c)) for c in range(0x80)
    )
    lines = [
        f"# written by python -m bigmodel_core.data.charset (Python {sys.version.split()[0]}, Unicode "
        f"{unicodedata.unidata_version}, pyarrow {pa.__version__}); code point, utf8_lower, str.casefold (hex)"
    ]
    for c, low in zip(cps, lowered, strict=True):
        folded = chr(c).casefold()
        if low != chr(c) or folded != chr(c):
            lines.append(f"{c:04X}\t{ord(low):04X}\t{' '.join(f'{ord(x):04X}' for x in folded)}")
    _TABLE.write_text("\n".join(lines) + "\n", encoding="ascii")
    print(f"{_TABLE}: {len(lines) - 1} code points")


if __name__ == "__main__":
    main()
