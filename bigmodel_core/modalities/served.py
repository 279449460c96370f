"""The served model's input, by modality: how a request's values are found, checked and made model input.

A served input (built for its modality: `served_input(modality)`) has
- `column`: the field or column a request names (the modality's content column), `noun`: what its values are;
- `values(model_input)`: the values of that column in whatever shape MLflow hands over (frame, dict, series,
  array, list); a missing column raises InputProblem, whose message the server answers with 400;
- `problem(values, allow_empty=..., max_rows=..., max_chars=...)`: why the values cannot be scored, or None;
- `prepare(predictor, values)`: (the model's inputs, None), or (_, (row, why)) for the first value the model's
  training would have set aside.
The text input takes strings (no NUL, valid Unicode; tracking/scoring.text_problem), cleans them with the
model's cleaning and refuses a text that breaks an input rule the model was trained under (data/quality
text_verdicts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from bigmodel_core.modalities.base import Facet, Modality
from bigmodel_core.tracking.scoring import text_problem

if TYPE_CHECKING:
    from bigmodel_core.models.bundle import Predictor


class InputProblem(ValueError):
    """A request the model cannot score; the message says why, naming the column or field."""


class ServedInput(Protocol):
    column: str
    noun: str

    def values(self, model_input: Any) -> list: ...

    def problem(self, values: list, *, allow_empty: bool = True, **limits: int | None) -> str | None: ...

    def prepare(self, predictor: Predictor, values: list) -> tuple[list, tuple[int, str] | None]: ...


class TextInput:
    def __init__(self, modality: Modality) -> None:
        self.column, self.noun = modality.column, modality.noun

    def values(self, model_input: Any) -> list:
        c = self.column
        if isinstance(model_input, pd.DataFrame):
            if c not in model_input.columns:
                raise InputProblem(f"input needs a '{c}' column, got columns {[str(x) for x in model_input.columns]}")
            return model_input[c].tolist()
        if isinstance(model_input, dict):
            if c not in model_input:
                raise InputProblem(f"input needs a '{c}' field, got fields {[str(k) for k in model_input]}")
            value = model_input[c]
            return [value] if isinstance(value, str) else np.asarray(value, dtype=object).ravel().tolist()
        if isinstance(model_input, pd.Series):
            return model_input.tolist()
        if isinstance(model_input, str):
            return [model_input]
        if isinstance(model_input, np.ndarray):
            return model_input.astype(object).ravel().tolist()
        return list(model_input)

    def problem(self, values: list, *, allow_empty: bool = True, **limits: int | None) -> str | None:
        return text_problem(values, self.column, allow_empty=allow_empty, **limits)

    def prepare(self, predictor: Predictor, values: list) -> tuple[list, tuple[int, str] | None]:
        cleaned = predictor.clean(values)
        return cleaned, refusal(predictor, values, cleaned)


def refusal(predictor: Predictor, texts: list, cleaned: list[str]) -> tuple[int, str] | None:
    """(row, why) of the first text whose cleaned form breaks an input rule the model was trained under with
    policy quarantine or fail; None when every text passes, or the bundle keeps no rules (older models)."""
    rules = predictor.input_rules
    if rules is None:
        return None
    from bigmodel_core.data.quality import text_verdicts

    for i, verdict in enumerate(text_verdicts(cleaned, rules)):
        if verdict is not None:
            rule, reason = verdict
            policy = rules.rules[rule].policy
            changed = "" if cleaned[i] == texts[i] else " (after the model's cleaning)"
            done = "set such texts aside" if policy == "quarantine" else "stopped at such texts"
            return i, (
                f"breaks input rule {rule}: {reason}{changed}; this model's training {done} "
                f"(validate.rules.{rule}.policy {policy}), so it does not score it"
            )
    return None


#: each entry builds the served input of its modality
SERVED: Facet[type] = Facet("served input", {"text": TextInput})


def served_input(modality: Modality) -> ServedInput:
    return SERVED(modality)(modality)
