"""The modalities: what is specific to text (and, later, to images or numeric vectors) as objects in a registry.

    modality = modalities.get(params.data.modality)     # the declaration: content column(s), stage schemas
    clean = cleaners.CLEANERS(modality)                  # one concern's implementation for it (a Facet)

base.py defines Modality and Facet; text.py declares the text modality; each concern's facet is a module of its
own (readers, cleaners, checks, augmenters, served), so a stage's code deps are the concern it runs, not every
modality's every part."""

from __future__ import annotations

from bigmodel_core.errors import ConfigError
from bigmodel_core.modalities.base import Facet, Modality
from bigmodel_core.modalities.text import TEXT

__all__ = ["Facet", "Modality", "get", "names", "register", "unregister"]

_MODALITIES: dict[str, Modality] = {TEXT.name: TEXT}


def get(name: str = "text") -> Modality:
    """The modality named `name` (params' data.modality); an unknown name is a ConfigError naming the key."""
    try:
        return _MODALITIES[name]
    except KeyError:
        raise ConfigError(f"data.modality: unknown modality {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_MODALITIES)


def register(modality: Modality) -> None:
    """Add (or replace) a modality; its facets are registered in their own modules (Facet.register)."""
    _MODALITIES[modality.name] = modality


def unregister(name: str) -> None:
    if name == TEXT.name:
        raise ValueError("the text modality cannot be removed")
    _MODALITIES.pop(name, None)
