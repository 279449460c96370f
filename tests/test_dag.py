import pytest
import yaml

from bigmodel_core.dag import load_dag
from bigmodel_core.errors import ConfigError
from bigmodel_core.stages import STAGES
from tests.conftest import REPO


def test_repo_dag_order_and_edges():
    stages = load_dag(REPO / "dvc.yaml")
    assert [s.name for s in stages] == list(STAGES)
    up = {s.name: set(s.upstream) for s in stages}
    assert up["ingest"] == set()
    assert up["train"] == {"split"}
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
