"""DVC's edges are exact: a stage's deps are its real import closure, its params the keys it reads, and what it
reads from outside DVC's view (the registry's champion) comes through a file DVC can see.

A change re-runs what it affects and nothing else: `tokenizer.max_length` re-runs validate (its truncated rule),
`train.log_every` re-runs nothing, a promote or a rollback re-runs evaluate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from bigmodel_core.stages import STAGES, get
from tests.conftest import BIN, REPO, copy_workspace, dvc, run_cmd


def _declared(name: str) -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]


# --------------------------------------------------------------------------- code: the import closure
def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


def test_import_closure_follows_every_import_that_can_run(tmp_path):
    from bigmodel_core.pipeline.dag import import_closure

    pkg = _package(
        tmp_path,
        {
            "pkg/__init__.py": '"""docstring only: runs nothing"""\n',
            "pkg/sub/__init__.py": "VERSION = 1\n",
            "pkg/stage.py": (
                "from typing import TYPE_CHECKING\n"
                "import json\n"
                "from pkg import top\n"
                "if TYPE_CHECKING:\n"
                "    from pkg import hints\n"
                "else:\n"
                "    from pkg import runtime\n"
                "def run():\n"
                "    from pkg.sub.deep import f\n"
                "    return f()\n"
            ),
            "pkg/top.py": "from . import leaf\n",
            "pkg/leaf.py": "",
            "pkg/hints.py": "",
            "pkg/runtime.py": "",
            "pkg/sub/deep.py": "def f():\n    from ..sub import more\n",
            "pkg/sub/more.py": "",
            "pkg/unused.py": "",
        },
    )
    assert import_closure("pkg.stage", root=pkg) == [
        "pkg/stage.py",  # its own file first, then the rest sorted
        "pkg/leaf.py",  # relative import, through top
        "pkg/runtime.py",  # the else branch of `if TYPE_CHECKING:` runs
        "pkg/sub/__init__.py",  # has code: importing pkg.sub.deep runs it
        "pkg/sub/deep.py",  # imported inside a function
        "pkg/sub/more.py",  # relative, two levels, inside a function
        "pkg/top.py",
    ]


def test_each_stage_depends_on_the_code_it_runs():
    from bigmodel_core.pipeline.dag import import_closure, stage_deps

    for name in STAGES:
        deps = _declared(name)["deps"]
        more = [c.removesuffix(".py").replace("/", ".") for c in get(name).SPEC.code]  # files run, not imported
        closure = import_closure(f"bigmodel_core.stages.{name}", *more)
        assert set(import_closure(f"bigmodel_core.stages.{name}")) <= set(closure)
        assert deps[: len(closure)] == closure, f"stage {name}: its code deps are not its import closure"
        assert deps == stage_deps(name)
    # what the hand-written lists missed: validate renders its page with report_html; evaluate runs the bundle's
    # Predictor, the encoders and batching
    assert "bigmodel_core/reporting/report_html.py" in _declared("validate")["deps"]
    for module in ("models/bundle.py", "text/encoders.py", "training/batching.py"):
        assert f"bigmodel_core/{module}" in _declared("evaluate")["deps"]
    # MLflow runs the served model's entry point from its file, not through an import
    assert "bigmodel_core/tracking/pyfunc_entry.py" in _declared("deploy")["deps"]
    # train takes its data profile from validate, not from computing one
    assert "data/profile.json" in _declared("train")["deps"]
    assert "data/profile.json" in [next(iter(o)) for o in _declared("validate")["outs"]]


# --------------------------------------------------------------------------- params: by key
def test_params_are_declared_by_key_and_exist():
    from bigmodel_core.config import load_params
    from bigmodel_core.pipeline.dag import declared_params, template_params
    from bigmodel_core.stages.spec import param_value

    params = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in STAGES:
        spec = get(name).SPEC
        for key in (*spec.params, *spec.bookkeeping):
            param_value(params, key)  # a key that does not exist raises KeyError, naming it
        assert not set(spec.params) & set(spec.bookkeeping)
        assert _declared(name)["params"] == declared_params(spec.params, raw) == declared_params(
            spec.params, template_params()
        )
    assert "tokenizer.max_length" in _declared("validate")["params"]  # the truncated rule
    assert "train.log_every" not in _declared("train")["params"] and "train" not in _declared("train")["params"]
    assert "train.lr" in _declared("train")["params"]
    with pytest.raises(KeyError, match=r"train\.no_such_key"):
        param_value(params, "train.no_such_key")


def test_params_a_file_lacks_are_left_out_and_a_stage_warns_when_they_are_set(tmp_path):
    from bigmodel_core.pipeline.dag import declared_params, undeclared_params

    # DVC refuses a declared key that params.yaml lacks: such a key is left out (its default is code)
    assert declared_params(("train.lr", "train.max_steps"), {"train": {"lr": 0.1}}) == ["train.lr"]
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["max_steps"] = 10
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    assert undeclared_params("train", tmp_path / "dvc.yaml", tmp_path / "params.yaml") == ["train.max_steps"]
    assert undeclared_params("evaluate", tmp_path / "dvc.yaml", tmp_path / "params.yaml") == []
    raw["train"]["log_every"] = 7  # bookkeeping: never declared, never warned about
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert undeclared_params("train", tmp_path / "dvc.yaml", tmp_path / "params.yaml") == ["train.max_steps"]


def _covered(key: str, declared) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.e2e
def test_each_stage_reads_only_the_params_it_declares(trained_ws, tmp_path):
    """Each stage runs again with every params read recorded (tests/params_recorder.py): all it reads is
    declared, in SPEC.params (dvc.yaml) or SPEC.bookkeeping, and each declared section or key is read."""
    ws = copy_workspace(trained_ws, tmp_path / "ws")
    for name in STAGES:
        out = run_cmd([sys.executable, str(REPO / "tests" / "params_recorder.py"), name], ws)
        read = json.loads(out.stdout.strip().splitlines()[-1])
        spec = get(name).SPEC
        undeclared = [k for k in read if not _covered(k, (*spec.params, *spec.bookkeeping))]
        assert undeclared == [], f"stage {name} reads {undeclared} but declares neither (SPEC.params, bookkeeping)"
        # and nothing declared that it does not read (a key read whole, or a section something in it is read)
        unread = [d for d in spec.params if not any(_covered(k, [d]) or _covered(d, [k]) for k in read)]
        assert unread == [], f"stage {name} declares {unread} but did not read them"


# --------------------------------------------------------------------------- what `dvc status` says
def _stale(root: Path) -> set[str]:
    out = dvc(root, "status", "--json").stdout
    return {name.split(":")[-1] for name in json.loads(out or "{}")}


def _set(root: Path, section: str, key: str, value) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.e2e
def test_a_param_change_makes_stale_exactly_the_stages_that_read_it(trained_ws, tmp_path):
    ws = copy_workspace(trained_ws, tmp_path / "ws")
    assert _stale(ws) == set()
    raw = (ws / "params.yaml").read_text()
    _set(ws, "train", "log_every", 7)  # how often progress is reported: no stage's result
    assert _stale(ws) == set()
    (ws / "params.yaml").write_text(raw)
    _set(ws, "tokenizer", "max_length", 16)  # validate's truncated rule counts words past it; train encodes with it
    assert _stale(ws) == {"validate", "train"}
    (ws / "params.yaml").write_text(raw)
    _set(ws, "deploy", "challenger_alias", "contender")  # deploy's alone
    assert _stale(ws) == {"deploy"}


_NEW_VERSION = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
v1 = client.get_model_version(sys.argv[2], "1")
print(client.create_model_version(sys.argv[2], v1.source, run_id=v1.run_id).version)
"""


@pytest.mark.e2e
def test_promote_and_rollback_make_validate_and_evaluate_stale(trained_ws, tmp_path):
    """The champion lives in the registry, which DVC cannot see: promote and rollback write registry/champion.json,
    a dependency of validate (drift against the champion) and evaluate (the comparison)."""
    ws = copy_workspace(trained_ws, tmp_path / "ws")
    assert _stale(ws) == set()
    assert not (ws / "registry/champion.json").exists()  # the pipeline's own promotion leaves it alone
    # a second version of the same model, then made champion by hand
    made = run_cmd([sys.executable, "-c", _NEW_VERSION, f"sqlite:///{ws / 'mlflow.db'}", "tiny-model"], ws)
    assert made.stdout.strip().splitlines()[-1] == "2"
    bigmodel = str(Path(BIN) / "bigmodel")
    run_cmd([bigmodel, "promote", "2", "--reason", "test"], ws)
    ref = json.loads((ws / "registry/champion.json").read_text())
    assert ref["model_name"] == "tiny-model" and ref["alias"] == "champion" and ref["version"] == "2"
    assert ref["run_id"]
    assert _stale(ws) == {"validate", "evaluate"}
    dvc(ws, "commit", "--force", "validate", "evaluate")  # as if they had run against v2
    assert _stale(ws) == set()
    run_cmd([bigmodel, "rollback", "--reason", "test"], ws)
    assert json.loads((ws / "registry/champion.json").read_text())["version"] == "1"
    assert _stale(ws) == {"validate", "evaluate"}
