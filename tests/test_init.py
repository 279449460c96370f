"""`bigmodel init` in a repository of one's own: no bigmodel sources there, the stages depend on the
installed version (bigmodel.version), `bigmodel run` and `dvc repro` work, and a new version re-runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, dvc, run_cmd, tiny_params_dict

pytestmark = pytest.mark.e2e


def bigmodel(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cmd([str(Path(BIN) / "bigmodel"), *args], root, check=check, timeout=900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel a user installs, built with `pip wheel --no-deps` from a copy of the sources (what git tracks, or
    would: a build writes build/ and *.egg-info/ next to its sources, and the checkout is left as it was)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO / name).read_bytes())
    # --no-build-isolation: the build backend (setuptools) comes from this environment, nothing is downloaded
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(out)], check=True, capture_output=True, timeout=600)
    (found,) = out.glob("bigmodel-*.whl")
    return found


def test_the_wheel_installs_no_generic_top_level_packages(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        top_level = set(z.read(info).decode().split())
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == top_level == {"bigmodel_core", "bigmodel_flows", "bigmodel_tasks"}
    # flows/ and tasks/ of the repository are there under their bigmodel names, with the template init writes
    assert {"bigmodel_flows/retrain.py", "bigmodel_tasks/dvc_stage.py", "bigmodel_tasks/release.py",
            "bigmodel_core/templates/params.yaml", "bigmodel_core/stages/deploy.py"} <= set(names)
    # every package of the source tree is in the wheel
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "bigmodel_core").rglob("__init__.py")}
    assert {p + "/__init__.py" for p in packages} <= set(names)


def test_template_params_are_the_repositorys_but_for_the_data_section():
    from bigmodel_core.workspace_init import params_template

    template, ours = yaml.safe_load(params_template()), yaml.safe_load((REPO / "params.yaml").read_text())
    assert {k: v for k, v in template.items() if k != "data"} == {k: v for k, v in ours.items() if k != "data"}, \
        "copy params.yaml's sections after data: into bigmodel_core/templates/params.yaml"
    assert "sources:" in params_template().split("labels:")[0] and "#     - name: tickets" in params_template()


def test_init_run_repro_and_a_new_version(tmp_path):
    import pandas as pd

    from bigmodel_core.data.demo import generate
    from bigmodel_core.stages.spec import VERSION_FILE

    root = tmp_path / "mine"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("*.log\n")
    out = bigmodel(root, "init").stdout
    assert "dvc init" in out and "wrote dvc.yaml" in out and "next:" in out
    assert (root / ".dvc").is_dir() and not (root / "bigmodel_core").exists()
    assert (root / VERSION_FILE).read_text().startswith("bigmodel ")
    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    deps = [d for s in doc["stages"].values() for d in s["deps"]]
    assert VERSION_FILE in deps and not any(d.startswith("bigmodel_core") for d in deps)
    ignored = (root / ".gitignore").read_text().splitlines()
    assert ignored[0] == "*.log" and {"mlflow.db*", ".prefect/", "/reports/deploy.json"} <= set(ignored)
    assert run_cmd([str(Path(BIN) / "bigmodel"), "dag", "--check"], root).returncode == 0
    # a second init refuses to overwrite, naming the files, and changes nothing
    again = bigmodel(root, "init", check=False)
    assert again.returncode == 2 and "params.yaml, dvc.yaml" in again.stderr and "--force" in again.stderr

    # a tiny CSV source of one's own
    rows = generate(rows=600, seed=3)[["text", "label"]].dropna()
    rows[rows["label"].isin(["sports", "business", "science", "travel"])].to_csv(root / "data/sources/mine.csv", index=False)
    raw = tiny_params_dict()
    raw["data"]["sources"] = [{"name": "mine", "path": "data/sources/mine.csv", "format": "csv"}]
    raw["validate"]["max_quarantine_fraction"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    ran = bigmodel(root, "run")
    assert "deploy" in ran.stdout and (root / "dvc.lock").exists()
    assert pd.read_parquet(root / "data/raw/rows.parquet")["source"].unique().tolist() == ["mine"]
    assert dvc(root, "repro").stdout.count("Running stage") == 0  # a no-op: everything is up to date

    # bigmodel.version stands for the code: a new version re-runs every stage
    (root / VERSION_FILE).write_text("bigmodel 999.0\n")
    rerun = dvc(root, "repro").stdout
    assert all(f"Running stage '{s}'" in rerun for s in ("ingest", "clean", "train", "deploy")), rerun[-2000:]
    # and `bigmodel run` puts the installed version back (then DVC re-runs with it)
    from bigmodel_core.workspace_init import refresh_version, version_text
    assert refresh_version(root).startswith(f"{VERSION_FILE}: bigmodel 999.0 -> ")
    assert (root / VERSION_FILE).read_text() == version_text() and refresh_version(root) is None


def test_init_refuses_a_clone_of_bigmodel_and_a_missing_directory(tmp_path):
    missing = run_cmd([str(Path(BIN) / "bigmodel"), "init", str(tmp_path / "nope")], tmp_path, check=False)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    clone = tmp_path / "clone"
    (clone / "bigmodel_core/stages").mkdir(parents=True)
    refused = run_cmd([str(Path(BIN) / "bigmodel"), "init", str(clone)], tmp_path, check=False)
    assert refused.returncode == 2 and "clone of bigmodel" in refused.stderr
    assert not (clone / "params.yaml").exists()
