"""What a modality is: the declaration every stage reads (its content columns and their schemas), and the
registry of one concern's implementations by modality (Facet).

A modality is the kind of input a run classifies (params' data.modality: text today). Its `Modality` says which
columns carry the content through every stage table and what they hold; each concern that differs between
modalities (reading a source, cleaning, the data-quality checks and profile, augmentation, the served input) is a
`Facet`: a registry in its own module (readers, cleaners, checks, augmenters, served), holding one implementation
per modality. A stage asks `modalities.get(params.data.modality)` for the modality and the facet of its concern
for the implementation, so a new modality is a module and one entry per facet, not an edit of the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bigmodel_core.data.schemas import Content, Schemas, boundary_schemas
from bigmodel_core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Modality:
    """name: its data.modality value; column: the content column of every stage table, which the model scores and
    the served input names; content: the pandera columns it adds to the provenance (schemas.Content); noun: how
    messages call its values ("texts")."""

    name: str
    column: str
    content: Content
    noun: str
    schemas: Schemas = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.column not in self.content.raw or self.column not in self.content.passed:
            raise ValueError(f"modality {self.name}: its column {self.column!r} is not among its content columns")
        object.__setattr__(self, "schemas", boundary_schemas(self.content))

    def values(self, frame) -> list:
        """The model inputs of a stage table's rows (its content column), in row order."""
        return frame[self.column].tolist()


class Facet(Generic[T]):
    """One concern's implementation per modality, by modality name (`concern` names it in errors)."""

    def __init__(self, concern: str, entries: dict[str, T]) -> None:
        self.concern, self._entries = concern, dict(entries)

    def __call__(self, modality: Modality) -> T:
        try:
            return self._entries[modality.name]
        except KeyError:
            raise ConfigError(
                f"data.modality: modality {modality.name!r} has no {self.concern} "
                f"(the modalities with one: {', '.join(sorted(self._entries))})"
            ) from None

    def register(self, name: str, implementation: T) -> None:
        """Add (or replace) modality `name`'s implementation of this concern."""
        self._entries[name] = implementation

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)
