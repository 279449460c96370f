"""MLflow pyfunc wrapper: a DataFrame with a `text` column of raw texts in; label and probabilities out."""

from __future__ import annotations

import warnings

import mlflow.pyfunc
import pandas as pd

# The signature is given explicitly when the model is logged; MLflow's hint-based inference is not used.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method.*")


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """Carries cleaning, tokenizer, weights and label map in one artifact (the bundle directory)."""

    def load_context(self, context) -> None:
        from bigmodel_core.models.bundle import Predictor

        self.predictor = Predictor(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.Series):
            texts = model_input.tolist()
        elif isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column, got columns {list(model_input.columns)}")
            texts = model_input["text"].tolist()
        else:
            texts = list(model_input)
        return output_frame(self.predictor.labels, self.predictor.predict_proba(texts))


def output_frame(labels: list[str], probs) -> pd.DataFrame:
    out = pd.DataFrame({"label": [labels[i] for i in probs.argmax(1)] if len(probs) else []}, dtype="object")
    for j, lab in enumerate(labels):
        out[f"prob_{lab}"] = probs[:, j].astype("float64") if len(probs) else []
    return out
