"""The only package that imports mlflow: runs, lineage tags, the registry and pyfunc packaging."""
