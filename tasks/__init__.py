"""Prefect tasks: thin wrappers that add policy (retries, tags) around DVC stages. No ML here."""
