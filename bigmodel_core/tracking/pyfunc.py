"""MLflow pyfunc wrapper: a DataFrame with a `text` column of raw texts in; label and probabilities out.

Input that cannot be scored raises MlflowException(INVALID_PARAMETER_VALUE), which MLflow's scoring
server answers with 400 and the message (any other exception would become a 400 with a generic one).
"""

from __future__ import annotations

import os
import warnings

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bigmodel_core.scoring import text_problem

# Limits of one served request, set by `bigmodel serve` from its options (export them to get the same
# under `mlflow models serve`). Without them (in-process, `mlflow models predict`) there is no limit
# and an empty input gives an empty output. MLflow's own "serving" flag is not used for this: it is
# also set by `mlflow models predict`, a batch tool.
MAX_ROWS_ENV, MAX_CHARS_ENV = "BIGMODEL_SERVE_MAX_ROWS", "BIGMODEL_SERVE_MAX_TEXT_CHARS"

# The signature is given explicitly when the model is logged; MLflow's hint-based inference is not used.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method.*")


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """Carries cleaning, tokenizer, weights and label map in one artifact (the bundle directory)."""

    def load_context(self, context) -> None:
        from bigmodel_core.models.bundle import Predictor

        self.predictor = Predictor(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        texts = input_texts(model_input)
        limits = serving_limits()
        problem = text_problem(texts, "text", allow_empty=limits is None, **(limits or {}))
        if problem:
            raise _invalid(problem)
        return output_frame(self.predictor.labels, self.predictor.predict_proba(texts))


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
