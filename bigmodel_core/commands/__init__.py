"""The `bigmodel` command's sub-commands, by concern (bigmodel_core/cli.py builds the app from them)."""
