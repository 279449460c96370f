"""MLflow pyfunc wrapper: a DataFrame with a `text` column of raw texts in (the column of the bundle's modality;
modalities/served.py checks it and makes it model input); label and probabilities out.

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

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

# Limits of one served request, set by `bigmodel serve` from its options (export them to get the same
# under `mlflow models serve`). Without them (in-process, `mlflow models predict`) there is no limit
# and an empty input gives an empty output. MLflow's own "serving" flag is not used for this: it is
# also set by `mlflow models predict`, a batch tool.
MAX_ROWS_ENV, MAX_CHARS_ENV = "BIGMODEL_SERVE_MAX_ROWS", "BIGMODEL_SERVE_MAX_TEXT_CHARS"

# The signature is given explicitly when the model is logged; MLflow's hint-based inference is not used.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method.*")


class TextClassifierModel(PythonModel):
    """Carries cleaning, tokenizer, weights and label map in one artifact (the bundle directory). What a request
    must hold and how it becomes model input is the served input of the bundle's modality (modalities/served)."""

    def load_context(self, context) -> None:
        from bigmodel_core.models.bundle import Predictor

        self.predictor = Predictor(context.artifacts["bundle"])
        self.refusal(["warm up"])  # the rules' compiled scan is loaded (or compiled, once) now, not on a request

    @property
    def served(self):
        """The served input of the predictor's modality (a bundle without one is text)."""
        from bigmodel_core import modalities
        from bigmodel_core.modalities.served import served_input

        cached = self.__dict__.get("_served")
        if cached is None or cached[0] is not self.predictor:
            cached = self.__dict__["_served"] = (self.predictor, served_input(modalities.get(self.predictor.modality)))
        return cached[1]

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from bigmodel_core.modalities.served import InputProblem

        try:
            values = self.served.values(model_input)
        except InputProblem as e:
            raise _invalid(str(e)) from None
        limits = serving_limits()
        problem = self.served.problem(values, allow_empty=limits is None, **(limits or {}))
        if problem:
            raise _invalid(problem)
        inputs, refused = self.served.prepare(self.predictor, values)
        if refused:
            raise _invalid(f"{self.served.column}[{refused[0]}] {refused[1]}")
        return output_frame(self.predictor.labels, self.predictor.predict_proba(inputs, clean=False))

    def refusal(self, values: list) -> tuple[int, str] | None:
        """(row, why) of the first value this model refuses by its training's input rules, or None."""
        return self.served.prepare(self.predictor, values)[1]


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


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
