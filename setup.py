"""Which packages the wheel holds (the rest of the build's configuration is in pyproject.toml).

The repository keeps the Prefect wiring in its top-level flows/ and tasks/ folders, but a wheel must not
install packages under such generic names into everyone's site-packages (they would shadow, or be shadowed
by, any other project's `tasks`). They are installed as bigmodel_flows and bigmodel_tasks instead, in regular
and editable installs alike; the code imports them by those names. pyproject.toml alone cannot say this:
its package discovery (`packages.find`) and a renaming `package-dir` do not combine.
"""

from setuptools import find_namespace_packages, setup

RENAMED = {"bigmodel_flows": "flows", "bigmodel_tasks": "tasks"}

setup(packages=[*find_namespace_packages(include=["bigmodel_core", "bigmodel_core.*"], exclude=["*.__pycache__"]), *RENAMED], package_dir=RENAMED)
