"""Prefect flows: wiring only (the stage graph comes from dvc.yaml, the settings from params.yaml)."""
