"""Prefect flows: wiring only (the stage graph comes from dvc.yaml, the settings from params.yaml).

Installed as `bigmodel_flows` (setup.py), not as a generic top-level `flows`: import it by that name."""
