"""Cleaning, by modality: what the clean stage runs on each record batch of the raw table.

A cleaner has `counters` (the report's counts, in order) and `clean(batch, params)`, which returns the batch
with its content columns cleaned (same schema, same rows: clean fixes rows, it never drops them) and the counts
for this batch. The text cleaner is cleaning.clean_array on the `text` column, the function evaluate and the
served model run too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bigmodel_core.data.cleaning import clean_array
from bigmodel_core.modalities.base import Facet

if TYPE_CHECKING:
    import pyarrow as pa

    from bigmodel_core.config import Params


class Cleaner(Protocol):
    counters: tuple[str, ...]

    def clean(self, batch: pa.RecordBatch, params: Params) -> tuple[pa.RecordBatch, dict[str, int]]: ...


class TextCleaner:
    """params.clean on the `text` column: changed (texts cleaning altered), truncated_to_max_chars."""

    counters: tuple[str, ...] = ("changed", "truncated_to_max_chars")

    def __init__(self, column: str = "text") -> None:
        self.column = column

    def clean(self, batch: pa.RecordBatch, params: Params) -> tuple[pa.RecordBatch, dict[str, int]]:
        import pyarrow as pa
        import pyarrow.compute as pc

        at = batch.schema.get_field_index(self.column)
        before = batch.column(at)
        after = clean_array(before, params.clean).cast(batch.schema.field(at).type)
        counts = {
            "changed": int(pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0),
            "truncated_to_max_chars": longer_than(before, params.clean.max_chars),
        }
        columns = [after if i == at else batch.column(i) for i in range(batch.num_columns)]
        return pa.RecordBatch.from_arrays(columns, schema=batch.schema), counts


def longer_than(texts, max_chars: int) -> int:
    """How many texts have more than max_chars characters. A character is one byte or more, so only the
    texts of more than max_chars bytes (their offsets say so) are counted in characters."""
    import pyarrow as pa
    import pyarrow.compute as pc

    long_ = pc.fill_null(pc.greater(pc.binary_length(texts), max_chars), False).to_numpy(zero_copy_only=False)
    if not long_.any():
        return 0
    return int(pc.sum(pc.greater(pc.utf8_length(texts.filter(pa.array(long_))), max_chars)).as_py() or 0)


CLEANERS: Facet[Cleaner] = Facet("cleaner", {"text": TextCleaner()})
