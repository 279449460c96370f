"""MLflow pyfunc wrapper: a DataFrame with a `text` column of raw texts in; label and probabilities out.

Input that cannot be scored raises MlflowException(INVALID_PARAMETER_VALUE), which MLflow's scoring
server answers with 400 and the message (any other exception would become a 400 with a generic one):
a value that is not a string, has a NUL or a lone surrogate (scoring.text_problem), and a text the model's
training would have set aside: after the model's own cleaning, a text that breaks a rule of validate that
judges a text on its own (empty_text, undecodable, too_short, too_long, control_chars, html_left) whose
policy was quarantine or fail when the model was trained (the bundle keeps their settings; data/quality/
text_verdicts applies them as validate does). A model from before bundles kept those settings is checked for
the first kind only.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from bigmodel_core.tracking.scoring import text_problem

# Limits of one served request, set by `bigmodel serve` from its options (export them to get the same
# under `mlflow models serve`). Without them (in-process, `mlflow models predict`) there is no limit
# and an empty input gives an empty output. MLflow's own "serving" flag is not used for this: it is
# also set by `mlflow models predict`, a batch tool.
MAX_ROWS_ENV, MAX_CHARS_ENV = "BIGMODEL_SERVE_MAX_ROWS", "BIGMODEL_SERVE_MAX_TEXT_CHARS"

# The signature is given explicitly when the model is logged; MLflow's hint-based inference is not used.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method.*")


class TextClassifierModel(PythonModel):
    """Carries cleaning, tokenizer, weights and label map in one artifact (the bundle directory)."""

    def load_context(self, context) -> None:
        from bigmodel_core.models.bundle import Predictor

        self.predictor = Predictor(context.artifacts["bundle"])
        self.refusal(["warm up"])  # the rules' compiled scan is loaded (or compiled, once) now, not on a request

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        texts = input_texts(model_input)
        limits = serving_limits()
        problem = text_problem(texts, "text", allow_empty=limits is None, **(limits or {}))
        if problem:
            raise _invalid(problem)
        cleaned = self.predictor.clean(texts)
        refused = refusal(self.predictor, texts, cleaned)
        if refused:
            raise _invalid(f"text[{refused[0]}] {refused[1]}")
        return output_frame(self.predictor.labels, self.predictor.predict_proba(cleaned, clean=False))

    def refusal(self, texts: list) -> tuple[int, str] | None:
        """(row, why) of the first text this model refuses by its training's input rules, or None."""
        return refusal(self.predictor, texts, self.predictor.clean(texts))


def refusal(predictor, texts: list, cleaned: list[str]) -> tuple[int, str] | None:
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


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def input_texts(model_input) -> list:
    """The values of the `text` column, whatever shape MLflow hands over (frame, dict, series, array, list)."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise _invalid(f"input needs a 'text' column, got columns {[str(c) for c in model_input.columns]}")
        return model_input["text"].tolist()
    if isinstance(model_input, dict):
        if "text" not in model_input:
            raise _invalid(f"input needs a 'text' field, got fields {[str(k) for k in model_input]}")
        value = model_input["text"]
        return [value] if isinstance(value, str) else np.asarray(value, dtype=object).ravel().tolist()
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, np.ndarray):
        return model_input.astype(object).ravel().tolist()
    return list(model_input)


def serving_limits() -> dict | None:
    """The per-request limits when serving (the variables are set); None otherwise."""
    rows, chars = os.environ.get(MAX_ROWS_ENV), os.environ.get(MAX_CHARS_ENV)
    if rows is None and chars is None:
        return None
    return {"max_rows": int(rows) if rows else None, "max_chars": int(chars) if chars else None}


def output_frame(labels: list[str], probs) -> pd.DataFrame:
    out = pd.DataFrame({"label": [labels[i] for i in probs.argmax(1)] if len(probs) else []}, dtype="object")
    for j, lab in enumerate(labels):
        out[f"prob_{lab}"] = probs[:, j].astype("float64") if len(probs) else []
    return out
