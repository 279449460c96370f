"""bigmodel: a retraining pipeline for text classifiers (library part).

Everything that knows about ML or data lives in this package; Prefect tasks and flows only wire it.
"""

__version__ = "0.1.0"
