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


def test_init_names_the_model_after_the_directory(tmp_path):
    from mlflow.utils.validation import _validate_model_name

    from bigmodel_core.pipeline.workspace_init import model_name_for, params_for, params_template

    cases = {"My_Tickets": "my-tickets", "sentiment v2": "sentiment-v2", "Ünïcode.Reviews": "unicode-reviews",
             "--x--": "x", "模型": "bigmodel-model", "___": "bigmodel-model"}
    for directory, name in cases.items():
        assert model_name_for(tmp_path / directory) == name
        _validate_model_name(name)  # MLflow takes it as a registered model name
    text = params_for(tmp_path / "My_Tickets")
    assert yaml.safe_load(text)["deploy"]["model_name"] == "my-tickets"
    # the rest of the template, comments included, is as written
    assert text.replace("my-tickets  # bigmodel init named it after the directory", "bigmodel-demo") == params_template()


def test_template_params_are_the_repositorys_but_for_the_data_section():
    from bigmodel_core.pipeline.workspace_init import params_template

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
    assert yaml.safe_load((root / "params.yaml").read_text())["deploy"]["model_name"] == "mine"
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
    from bigmodel_core.pipeline.workspace_init import refresh_version, version_text
    assert refresh_version(root).startswith(f"{VERSION_FILE}: bigmodel 999.0 -> ")
    assert (root / VERSION_FILE).read_text() == version_text() and refresh_version(root) is None


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh virtual environment with the wheel installed as a user installs it (its files copied into
    site-packages, the `bigmodel` script written by the installer). Its dependencies are this environment's,
    reached through a .pth line: installing torch, MLflow, Prefect and DVC again would take many minutes and
    prove nothing about bigmodel. That directory's own .pth files are not run from there, so the editable install
    of this checkout stays out of sight: every bigmodel module the new environment imports comes from the wheel."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "bigmodel-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # uv (which `make install` puts beside this interpreter) installs into that environment alone; --no-deps
    # --no-index: nothing but the wheel, nothing downloaded
    subprocess.run([str(Path(BIN) / "uv"), "pip", "install", "-q", "--python", str(python), "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    return where / "bin"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pip_install_init_run_serve_in_a_fresh_repository(wheel, tmp_path):
    """The README's path in a repository of one's own: install the wheel, `bigmodel init`, a TSV source,
    `bigmodel run`: the model becomes the champion, and `bigmodel serve` answers POST /invocations with it."""
    import os
    import signal
    import time

    import requests

    from bigmodel_core.data.demo import generate
    from tests.conftest import env_for

    bin_dir = _venv_with(wheel, tmp_path / "venv")
    root = tmp_path / "My_Tickets"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    env = {**env_for(root), "PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("VIRTUAL_ENV", None)

    def user(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        assert not check or proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    where = user("python", "-c", "import bigmodel_core, bigmodel_flows, bigmodel_tasks, shutil; "
                 "print(bigmodel_core.__file__, bigmodel_flows.__file__, shutil.which('bigmodel'))").stdout.split()
    assert all(path.startswith(str(tmp_path / "venv")) for path in where), where
    for generic in ("flows", "tasks"):
        missing = user("python", "-c", f"import {generic}", check=False)
        assert missing.returncode == 1 and f"No module named '{generic}'" in missing.stderr

    assert user("bigmodel", "--version").stdout == f"bigmodel {wheel.name.split('-')[1]}\n"  # the wheel's version
    assert "wrote params.yaml" in user("bigmodel", "init").stdout
    raw = yaml.safe_load((root / "params.yaml").read_text())
    assert raw["deploy"]["model_name"] == "my-tickets"  # named after the repository
    # a TSV source of our own, and the pipeline shrunk to seconds (the sections after data: are the tiny ones)
    rows = generate(rows=600, seed=5)[["text", "label"]].dropna()
    rows = rows[rows["label"].isin(["sports", "business", "science", "travel"])]
    lines = ["text\tlabel"] + [f"{' '.join(str(t).split())}\t{label}" for t, label in zip(rows["text"], rows["label"])]
    (root / "data/sources/tickets.tsv").write_text("\n".join(lines) + "\n")
    tiny = tiny_params_dict()
    for section in ("validate", "tokenizer", "model", "train", "evaluate", "flow"):
        raw[section] = tiny[section]
    raw["data"]["sources"] = [{"name": "tickets", "path": "data/sources/tickets.tsv", "format": "tsv"}]
    raw["validate"]["max_quarantine_fraction"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    ran = user("bigmodel", "run").stdout
    assert ("registered my-tickets version 1 with alias(es) challenger, champion: promoted (first champion of "
            "my-tickets; params.yaml has no commit yet, so no run here is an experiment: the gate alone decides)") in ran, ran
    assert "NOT promoted" not in ran

    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(["bigmodel", "serve", "--port", str(port)], cwd=root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
        while True:
            assert server.poll() is None, f"bigmodel serve exited {server.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no answer on /ping in 180 s:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        texts = ["The striker scored twice in the derby", "Shares and profit rose after the merger"]
        answer = requests.post(f"{url}/invocations", json={"dataframe_records": [{"text": t} for t in texts]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model"] == "models:/my-tickets/1"
        predictions = answer.json()["predictions"]
        labels = ["sports", "business", "science", "travel"]
        assert len(predictions) == 2 and all(p["label"] in labels for p in predictions)
        assert all(abs(sum(p[f"prob_{label}"] for label in labels) - 1) < 1e-5 for p in predictions)
        assert "serving my-tickets v1 (models:/my-tickets@champion)" in log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_init_refuses_a_clone_of_bigmodel_and_a_missing_directory(tmp_path):
    missing = run_cmd([str(Path(BIN) / "bigmodel"), "init", str(tmp_path / "nope")], tmp_path, check=False)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    clone = tmp_path / "clone"
    (clone / "bigmodel_core/stages").mkdir(parents=True)
    refused = run_cmd([str(Path(BIN) / "bigmodel"), "init", str(clone)], tmp_path, check=False)
    assert refused.returncode == 2 and "clone of bigmodel" in refused.stderr
    assert not (clone / "params.yaml").exists()
