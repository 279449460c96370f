"""Augmentation, by modality: the train-only variants the augment stage adds to each batch of validated rows.

An augmenter is `augment(frame, augment_params, split_params, carve_val) -> (frame, counts)`: the rows and,
after them, their variants (parent_id, is_augmented; the augmented schema), with counts originals, variants and
train_parents. Text's is data/augment.py (word dropout and neighbour swaps)."""

from __future__ import annotations

from collections.abc import Callable

from bigmodel_core.data.augment import augment
from bigmodel_core.modalities.base import Facet

AUGMENTERS: Facet[Callable] = Facet("augmentation", {"text": augment})
