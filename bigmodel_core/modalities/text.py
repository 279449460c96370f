"""The text modality: one `text` column of strings (several source columns are joined into it when read)."""

from __future__ import annotations

from bigmodel_core.data.schemas import TEXT as TEXT_CONTENT
from bigmodel_core.modalities.base import Modality

TEXT = Modality(name="text", column="text", content=TEXT_CONTENT, noun="texts")
