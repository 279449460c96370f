import pytest
import yaml

from bigmodel_core.pipeline.dag import load_dag
from bigmodel_core.errors import ConfigError
from bigmodel_core.stages import STAGES
from tests.conftest import REPO


def test_repo_dag_order_and_edges():
    stages = load_dag(REPO / "dvc.yaml")
    assert [s.name for s in stages] == list(STAGES)
    up = {s.name: set(s.upstream) for s in stages}
    assert up["ingest"] == set()
    assert up["train"] == {"split", "validate"}  # validate's data profile goes into the model bundle
    assert up["evaluate"] == {"train", "split"}
    assert up["deploy"] == {"train", "evaluate", "validate"}
    assert all(s.cmd == f"bigmodel stage {s.name}" for s in stages)


def test_every_stage_param_section_exists():
    from bigmodel_core.config import load_params
    params = load_params(REPO / "params.yaml").as_dict()
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, spec in doc["stages"].items():
        for key in spec.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"dvc.yaml stage {name}: param {key} not in params.yaml"
                node = node[part]


def test_cycle_is_reported(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": {"cmd": "x", "deps": ["b.txt"], "outs": ["a.txt"]},
        "b": {"cmd": "y", "deps": ["a.txt"], "outs": ["b.txt"]},
    }}))
    with pytest.raises(ConfigError, match="cycle"):
        load_dag(tmp_path / "dvc.yaml")


@pytest.mark.e2e
def test_dvc_yaml_is_what_the_stages_declare(tmp_path):
    """Each stage declares its inputs, outputs and params once (SPEC); dvc.yaml is generated from them and
    Paths reads the same locations, so the three cannot drift apart."""
    import subprocess
    import sys

    from bigmodel_core.pipeline.dag import render_dvc_yaml
    from bigmodel_core.paths import Paths
    from bigmodel_core.stages import get
    from bigmodel_core.stages.spec import LOCATIONS

    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml(), "run `bigmodel dag --write` and commit dvc.yaml"
    doc = yaml.safe_load(render_dvc_yaml())
    paths = Paths(tmp_path)
    for name in STAGES:
        spec = get(name).SPEC
        declared = [next(iter(o)) for k in ("outs", "metrics", "plots") for o in doc["stages"][name].get(k, [])]
        assert declared == [o.path for k in ("outs", "metrics", "plots") for o in spec.outs if o.kind == k]
        assert all(getattr(paths, o.name) == tmp_path / o.path for o in spec.outs)
        assert all(i in LOCATIONS or (REPO / i).exists() or i == "data/sources" for i in spec.inputs)
        assert all((REPO / c).exists() for c in spec.code), f"stage {name}: a code dependency does not exist"
    with pytest.raises(AttributeError, match="stage outputs are"):
        paths.no_such_output
    # the CLI: --check fails on a stale file and names the fix; --write repairs it. The layout follows the
    # file's directory: a clone of bigmodel (bigmodel_core/stages/ there) gets deps on source files, any
    # other directory (a workspace of one's own) deps on bigmodel.version.
    clone, own = tmp_path / "clone", tmp_path / "own"
    (clone / "bigmodel_core/stages").mkdir(parents=True)
    own.mkdir()
    for root, installed in ((clone, False), (own, True)):
        stale = root / "dvc.yaml"
        stale.write_text(render_dvc_yaml(installed).replace("      - clean\n", "", 1))
        cli = [sys.executable, "-m", "bigmodel_core.cli", "dag", "--file", str(stale)]
        bad = subprocess.run([*cli, "--check"], capture_output=True, text=True, cwd=REPO)
        assert bad.returncode == 1 and "bigmodel dag --write" in bad.stderr
        assert subprocess.run([*cli, "--write"], capture_output=True, text=True, cwd=REPO).returncode == 0
        assert stale.read_text() == render_dvc_yaml(installed)
        assert subprocess.run([*cli, "--check"], capture_output=True, text=True, cwd=REPO).returncode == 0
    assert "bigmodel_core/stages/train.py" in (clone / "dvc.yaml").read_text()
    assert "bigmodel_core/" not in (own / "dvc.yaml").read_text() and "bigmodel.version" in (own / "dvc.yaml").read_text()


def _data_imports(path) -> set[str]:
    """The bigmodel_core/data modules a source file imports, at its top or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "bigmodel_core.data":
                found |= {f"bigmodel_core/data/{a.name}.py" for a in node.names}
            elif node.module.startswith("bigmodel_core.data."):
                found.add(node.module.replace(".", "/") + ".py")
        elif isinstance(node, ast.Import):
            found |= {a.name.replace(".", "/") + ".py" for a in node.names if a.name.startswith("bigmodel_core.data.")}
    return {f for f in found if (REPO / f).is_file()}


def test_every_data_module_a_stage_runs_is_one_of_its_deps():
    # a change to a module a stage imports, directly or through another, must make `dvc repro` run it again
    # (clean once ran kernels.layout without its module among its deps)
    from bigmodel_core.pipeline.dag import stage_deps

    for name in STAGES:
        code = stage_deps(name)
        files = [f"bigmodel_core/stages/{name}.py", *(c for c in code if c.endswith(".py"))]
        files += [p.relative_to(REPO).as_posix() for c in code if not c.endswith(".py") for p in (REPO / c).rglob("*.py")]
        seen, todo = set(), list(files)
        while todo:
            for g in _data_imports(REPO / todo.pop()) - seen:
                seen.add(g)
                todo.append(g)
        missing = sorted(f for f in seen if f not in code and not any(f.startswith(c + "/") for c in code))
        assert missing == [], f"stage {name} runs {missing} but its deps do not list them"
    assert "bigmodel_core/data/kernels/layout.py" in stage_deps("clean")
