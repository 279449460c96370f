"""Models-from-code entry point for MLflow: logged as the model's code, so nothing is pickled."""

import mlflow

from bigmodel_core.tracking.pyfunc import TextClassifierModel

mlflow.models.set_model(TextClassifierModel())
