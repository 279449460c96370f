"""Reading a source, by modality: what ingest calls for each entry of data.sources.

A reader takes a `Source` and the workspace root and yields raw frames (provenance, the modality's content
columns, label, fixed_split; its schemas' RAW), one file at a time. Text's readers are data/formats/: a
source's `text` column(s) become the `text` column."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.data.formats import iter_source
from bigmodel_core.modalities.base import Facet

Reader = Callable[[Source, Path], Iterator[pd.DataFrame]]

READERS: Facet[Reader] = Facet("reader", {"text": iter_source})
