"""`bigmodel init`: make a directory (your own git repository, usually) a bigmodel workspace.

Writes params.yaml (the demo source as written, with a commented example of your own, and the registered model
named after the directory: deploy.model_name), dvc.yaml (generated
from the installed stages' declarations, depending on bigmodel.version instead of source files), the
version file, data/sources/, and the .gitignore and .dvcignore lines for local state; runs `dvc init` when
the directory has no .dvc/, and gives DVC the plots page that draws offline (plots_page.install). Existing
files are not overwritten without --force.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

from bigmodel_core.errors import ConfigError

#: local state that runs write and neither git nor DVC should track
GITIGNORE = (
    "mlflow.db*",
    "mlartifacts/",
    ".prefect/",
    ".bigmodel/",
    "/reports/deploy.json",
    "/registry/champion.json",
    "/dvc_plots/",
)
CHAMPION_REF_README = """\
champion.json here names the version the registry's champion alias points at, as the last
`bigmodel promote` or `bigmodel rollback` left it (bigmodel_core/tracking/registry.py writes it).
validate (drift) and evaluate (the comparison) read the champion from the MLflow registry, which DVC
cannot see, so they declare this folder as a dependency: after a promote or a rollback, `dvc status`
shows them changed and `dvc repro` compares again. Like mlflow.db, the file is this workspace's own
(git ignores it); this README keeps the folder in place before the first move.
"""
DVCIGNORE = ("mlflow.db*", "mlartifacts/", ".prefect/", ".bigmodel/")


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bigmodel")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+source"


def version_text() -> str:
    return f"bigmodel {installed_version()}\n"


def params_template() -> str:
    return resources.files("bigmodel_core").joinpath("templates/params.yaml").read_text()


def model_name_for(root: Path) -> str:
    """The registered model name for a workspace: its directory's name as a slug (lower-case ASCII letters and
    digits, accents dropped, runs of anything else as one '-'), valid as an MLflow model name, a Prefect tag and a
    git tag part."""
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", Path(root).resolve().name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug or "bigmodel-model"


def params_for(root: Path) -> str:
    """The template params.yaml with deploy.model_name set to the workspace's own name (comments kept)."""
    text, count = re.subn(
        r"(?m)^(  model_name: )bigmodel-demo$",
        lambda m: f"{m.group(1)}{model_name_for(root)}  # bigmodel init named it after the directory",
        params_template(),
    )
    if count != 1:  # the template's deploy section changed: this function must follow it
        raise RuntimeError("templates/params.yaml: expected one 'model_name: bigmodel-demo' line under deploy:")
    return text


def init(root: Path, force: bool = False) -> list[str]:
    """Make `root` a workspace; returns one line per thing done. Raises ConfigError (nothing written) when
    root is not a directory, is a clone of bigmodel itself, or already has the files and force is off."""
    from bigmodel_core.io import atomic_path
    from bigmodel_core.pipeline.dag import render_dvc_yaml
    from bigmodel_core.stages.spec import VERSION_FILE

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (create it first, e.g. a git repository: git init {root})")
    if (root / "bigmodel_core" / "stages").is_dir():
        raise ConfigError(f"{root} is a clone of bigmodel itself: its params.yaml and dvc.yaml are there already")
    files = {"params.yaml": params_for(root), "dvc.yaml": render_dvc_yaml(installed=True), VERSION_FILE: version_text()}
    present = [name for name in files if (root / name).exists()]
    if present and not force:
        raise ConfigError(
            f"{', '.join(present)} already in {root}; `bigmodel init --force` writes them again "
            "(your params.yaml would be replaced by the template)"
        )
    done = []
    if not (root / ".dvc").is_dir():  # first: the step most likely to fail, before any file is written
        scm = (root / ".git").exists()
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "init", "-q", *([] if scm else ["--no-scm"])],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ConfigError(f"dvc init failed in {root}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        done.append("dvc init" + ("" if scm else " --no-scm (not a git repository: DVC runs without git)"))
    from bigmodel_core.reporting.plots_page import install as install_plots_page

    plots_page = install_plots_page(root)
    if plots_page:
        done.append(plots_page)
    for name, text in files.items():
        with atomic_path(root / name, keep_mode=True) as tmp:
            tmp.write_text(text)
        done.append(
            f"wrote {name}"
            + (f" (deploy.model_name: {model_name_for(root)}, after the directory)" if name == "params.yaml" else "")
        )
    sources = root / "data" / "sources"
    if not sources.is_dir():
        sources.mkdir(parents=True)
        (sources / "README.md").write_text("Put your source files here and name them in params.yaml (data.sources).\n")
        done.append("made data/sources/ (ingest's input folder, a DVC dependency)")
    made = champion_ref_folder(root)
    if made:
        done.append(made)
    for name, lines in ((".gitignore", GITIGNORE), (".dvcignore", DVCIGNORE)):
        added = _add_lines(root / name, lines)
        if added:
            done.append(f"{name}: added {', '.join(added)}")
    return done


def champion_ref_folder(root: Path) -> str | None:
    """Make registry/ (with its README) when it is missing: validate and evaluate depend on it, so DVC needs
    it before the first promote or rollback writes the champion reference there. Returns a line saying so."""
    from bigmodel_core.stages.spec import LOCATIONS

    folder = Path(root) / LOCATIONS["champion_ref"]
    if (folder / "README.md").exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(CHAMPION_REF_README)
    return f"made {LOCATIONS['champion_ref']}/ (the champion reference validate and evaluate depend on)"


def refresh_version(root: Path) -> str | None:
    """In a workspace made by `bigmodel init`, record the installed version in bigmodel.version when it
    changed (so DVC re-runs the stages with the new code); returns a line saying so, or None."""
    from bigmodel_core.stages.spec import VERSION_FILE

    path = Path(root) / VERSION_FILE
    if not path.exists():
        return None
    old, new = path.read_text(), version_text()
    if old == new:
        return None
    path.write_text(new)
    return f"{VERSION_FILE}: {old.strip() or '(empty)'} -> {new.strip()}; DVC re-runs the stages with this version"


def _add_lines(path: Path, lines: tuple[str, ...]) -> list[str]:
    have = path.read_text().splitlines() if path.exists() else []
    missing = [line for line in lines if line not in have]
    if missing:
        text = "\n".join(have)
        block = "# bigmodel: local state of runs\n" + "\n".join(missing) + "\n"
        path.write_text((text + "\n" if text else "") + block)
    return missing
