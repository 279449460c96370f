"""data: where the rows come from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bigmodel_core.config.base import _Section


class Source(_Section):
    name: str = Field(description="Short name of the source, used in row ids, reports and errors.")
    path: str = Field(
        description="Local path or fsspec URL (glob allowed); 'builtin:demo' is the built-in demo corpus."
    )
    format: Literal["csv", "tsv", "parquet", "jsonl", "folder", "demo"] = Field(
        description="File format. 'folder': one file per row, label = parent folder (a folder or a .tar.gz)."
    )
    text: list[str] = Field(
        default_factory=lambda: ["text"],
        description="Column(s) that make the text; several are joined with text_separator.",
    )
    text_separator: str = Field(default=" ", description="String put between several text columns.")
    label: str = Field(default="label", description="Column that holds the label (ignored for 'folder').")
    columns: list[str] | None = Field(
        default=None, description="Column names for csv/tsv files without a header row; null = first row is a header."
    )
    label_map: dict[str, str] | None = Field(
        default=None, description="Maps raw label values to class names; for 'folder', also selects the folders read."
    )
    split: Literal["train", "val", "test"] | None = Field(
        default=None,
        description="Fixed split for every row of this source; null = assigned by the split stage. "
        "A dataset with rows of split val (its own validation set) keeps all its train rows for training: none "
        "are carved out for validation.",
    )
    file_glob: str = Field(default="*.txt", description="For 'folder': which files are rows.")
    delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="For csv: the field separator (default ','; tsv is always a tab).",
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of csv/tsv/jsonl files and folder members (utf-8, utf-16, latin-1, cp1252, ...).",
    )
    undecodable: Literal["fail", "quarantine"] = Field(
        default="fail",
        description="Bytes that are not valid in `encoding`: fail stops ingest naming the byte and line; quarantine "
        "replaces them (U+FFFD) and validate's rule undecodable sets those rows aside.",
    )
    max_line_bytes: int = Field(
        default=10_000_000,
        ge=1000,
        description="A longer line stops ingest: a file without line breaks, or a quote that swallowed the rest.",
    )
    rows: int = Field(default=3000, ge=100, description="For 'demo': how many rows to generate (at least 100).")
    seed: int = Field(default=7, description="For 'demo': generator seed.")

    @field_validator("text", mode="before")
    @classmethod
    def _text_as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one column")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (utf-8, utf-16, latin-1, cp1252, ...)") from None

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys_as_str(cls, v: Any) -> Any:
        # YAML reads `1: World` with an int key; raw labels are compared as strings.
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v


class DataParams(_Section):
    modality: Literal["text"] = Field(
        default="text",
        description="What the rows hold and the model classifies: text (a string per row). It picks the content "
        "columns, reader, cleaning, data-quality rules, profile and the served model's input (bigmodel_core/"
        "modalities/).",
    )
    sources: list[Source] = Field(min_length=1, description="Where the rows come from; all sources are concatenated.")
    labels: list[str] | None = Field(
        default=None,
        description="The label set; rows with another label are quarantined. null = every label seen is valid.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DataParams:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return self
