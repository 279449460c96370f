"""pandera schemas of every table that crosses a stage boundary.

A table is provenance columns (where each row came from), the content columns of the run's modality (text: one
`text` column; modalities/ says what each modality adds), the label and the stage's own bookkeeping columns.
`boundary_schemas(content)` builds one schema per boundary for a modality's `Content`; the module-level RAW, CLEAN,
VALIDATED, QUARANTINE, AUGMENTED and SPLIT are the text modality's (TEXT), as every run so far has used."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.pandas as pa

SPLITS = ("train", "val", "test")

_provenance = {
    "row_id": pa.Column(str, unique=True, description="Stable id: hash of source name and location."),
    "source": pa.Column(str, description="Source name from params.yaml."),
    "source_file": pa.Column(str, description="File the row came from."),
    "source_row": pa.Column("int64", pa.Check.ge(0), description="Row number in that file (1 = first data row)."),
}


@dataclass(frozen=True)
class Content:
    """A modality's content columns: as read and cleaned (`raw`: a value may be missing or bad, validate judges
    it; the quarantine keeps them so) and after validate passed the row (`passed`: usable by training)."""

    raw: dict[str, pa.Column]
    passed: dict[str, pa.Column]
    group_key: str = field(default="Hash of the normalised text: duplicates share it.")  # its column's description


@dataclass(frozen=True)
class Schemas:
    """The schema of each stage boundary for one modality."""

    RAW: pa.DataFrameSchema
    CLEAN: pa.DataFrameSchema
    VALIDATED: pa.DataFrameSchema
    QUARANTINE: pa.DataFrameSchema
    AUGMENTED: pa.DataFrameSchema
    SPLIT: pa.DataFrameSchema


def _rows_schema(name: str, content: Content) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            **_provenance,
            **content.raw,
            "label": pa.Column(str, nullable=True),
            "fixed_split": pa.Column(str, pa.Check.isin(["train", "val", "test"]), nullable=True),
        },
        strict=True,
        name=name,
    )


def boundary_schemas(content: Content) -> Schemas:
    """Every boundary's schema for a modality whose content columns are `content`."""
    validated = pa.DataFrameSchema(
        {
            **_provenance,
            **content.passed,
            "label": pa.Column(str),
            "fixed_split": pa.Column(str, pa.Check.isin(["train", "val", "test"]), nullable=True),
            "group_key": pa.Column(str, description=content.group_key),
        },
        strict=True,
        name="validated",
    )
    quarantine = pa.DataFrameSchema(
        {
            **_provenance,
            **content.raw,
            "label": pa.Column(str, nullable=True),
            "rule": pa.Column(str),
            "reason": pa.Column(str),
        },
        strict=True,
        name="quarantine",
    )
    augmented = pa.DataFrameSchema(
        {
            **validated.columns,
            "row_id": pa.Column(str, unique=True),
            "parent_id": pa.Column(str, description="row_id of the original row (itself for originals)."),
            "is_augmented": pa.Column(bool),
        },
        strict=True,
        name="augmented",
    )
    split = pa.DataFrameSchema(
        {**augmented.columns, "split": pa.Column(str, pa.Check.isin(list(SPLITS)))},
        strict=True,
        name="split",
    )
    return Schemas(
        RAW=_rows_schema("raw", content),
        CLEAN=_rows_schema("clean", content),
        VALIDATED=validated,
        QUARANTINE=quarantine,
        AUGMENTED=augmented,
        SPLIT=split,
    )


#: The text modality's content: one `text` column, non-empty once validated.
TEXT = Content(
    raw={"text": pa.Column(str, nullable=True)},
    passed={"text": pa.Column(str, pa.Check.str_length(min_value=1))},
)

_text = boundary_schemas(TEXT)
RAW, CLEAN, VALIDATED, QUARANTINE, AUGMENTED, SPLIT = (
    _text.RAW,
    _text.CLEAN,
    _text.VALIDATED,
    _text.QUARANTINE,
    _text.AUGMENTED,
    _text.SPLIT,
)
