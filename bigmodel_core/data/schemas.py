"""pandera schemas of every table that crosses a stage boundary."""

from __future__ import annotations

import pandera.pandas as pa

SPLITS = ("train", "val", "test")

_provenance = {
    "row_id": pa.Column(str, unique=True, description="Stable id: hash of source name and location."),
    "source": pa.Column(str, description="Source name from params.yaml."),
    "source_file": pa.Column(str, description="File the row came from."),
    "source_row": pa.Column("int64", pa.Check.ge(0), description="Row number in that file (1 = first data row)."),
}


def _rows_schema(name: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            **_provenance,
            "text": pa.Column(str, nullable=True),
            "label": pa.Column(str, nullable=True),
            "fixed_split": pa.Column(str, pa.Check.isin(["train", "val", "test"]), nullable=True),
        },
        strict=True,
        name=name,
    )


RAW = _rows_schema("raw")
CLEAN = _rows_schema("clean")

VALIDATED = pa.DataFrameSchema(
    {
        **_provenance,
        "text": pa.Column(str, pa.Check.str_length(min_value=1)),
        "label": pa.Column(str),
        "fixed_split": pa.Column(str, pa.Check.isin(["train", "val", "test"]), nullable=True),
        "group_key": pa.Column(str, description="Hash of the normalised text: duplicates share it."),
    },
    strict=True,
    name="validated",
)

QUARANTINE = pa.DataFrameSchema(
    {
        **_provenance,
        "text": pa.Column(str, nullable=True),
        "label": pa.Column(str, nullable=True),
        "rule": pa.Column(str),
        "reason": pa.Column(str),
    },
    strict=True,
    name="quarantine",
)

AUGMENTED = pa.DataFrameSchema(
    {
        **VALIDATED.columns,
        "row_id": pa.Column(str, unique=True),
        "parent_id": pa.Column(str, description="row_id of the original row (itself for originals)."),
        "is_augmented": pa.Column(bool),
    },
    strict=True,
    name="augmented",
)

SPLIT = pa.DataFrameSchema(
    {**AUGMENTED.columns, "split": pa.Column(str, pa.Check.isin(list(SPLITS)))},
    strict=True,
    name="split",
)
