"""Prefect tasks: thin wrappers that add policy (retries, tags) around DVC stages. No ML here.

Installed as `bigmodel_tasks` (setup.py), not as a generic top-level `tasks`: import it by that name."""
