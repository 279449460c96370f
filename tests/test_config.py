from pathlib import Path

import pytest
import yaml

from bigmodel_core.config import apply_overrides, load_params, parse_override, parse_params
from bigmodel_core.errors import ConfigError
from bigmodel_core.pipeline.params_file import persist_overrides
from tests.conftest import REPO, tiny_params_dict


def test_repo_params_load_with_every_section():
    p = load_params(REPO / "params.yaml")
    assert p.data.sources[0].format == "demo"
    assert p.validate.rules["duplicate"].policy == "quarantine"
    assert p.train.epochs >= 1 and p.deploy.champion_alias == "champion"
    assert set(p.as_dict()) == {"data", "clean", "validate", "augment", "split", "tokenizer", "model", "train",
                                "evaluate", "deploy", "tracking", "flow", "notify"}


def test_unknown_key_names_its_path():
    raw = tiny_params_dict()
    raw["train"]["epochz"] = 3
    with pytest.raises(ConfigError, match=r"params.yaml: train.epochz: unknown key"):
        parse_params(raw)


def test_wrong_value_names_key_rule_and_value():
    raw = tiny_params_dict()
    raw["train"]["lr"] = -1
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert "train.lr" in str(e.value) and "greater than 0" in str(e.value) and "-1" in str(e.value)


def test_source_errors_name_the_list_index():
    raw = tiny_params_dict()
    raw["data"]["sources"][0]["format"] = "xml"
    with pytest.raises(ConfigError, match=r"data.sources\[0\].format"):
        parse_params(raw)


def test_unknown_rule_and_heads_rule():
    raw = tiny_params_dict()
    raw["validate"]["rules"]["spelling"] = {"policy": "warn"}
    with pytest.raises(ConfigError, match="unknown rule"):
        parse_params(raw)
    raw = tiny_params_dict()
    raw["model"].update(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="n_heads"):
        parse_params(raw)


def test_a_rule_across_sections_names_both_keys_before_anything_runs():
    raw = apply_overrides(tiny_params_dict(), ["model.kind=bag"])  # the tiny params' transformer keys go with it
    raw["train"]["nproc"] = 2
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert str(e.value) == ("params.yaml: train.nproc is 2, but model.kind bag trains in one process (its sparse "
                            "n-gram table does not work with DDP): set train.nproc to 1")
    raw["train"]["nproc"] = 1
    assert parse_params(raw).train.nproc == 1


def test_overrides_use_dvc_syntax_and_yaml_values():
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("params.yaml:data.labels=[a, b]") == (["data", "labels"], ["a", "b"])
    assert parse_override("data.sources.0.rows=10") == (["data", "sources", 0, "rows"], 10)
    raw = apply_overrides(tiny_params_dict(), ["train.lr=0.5", "data.sources.0.rows=123"])
    p = parse_params(raw)
    assert p.train.lr == 0.5 and p.data.sources[0].rows == 123
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")


def test_override_of_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params_dict()))
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_params(path, ["train.nope=1"])


def test_persist_overrides_keeps_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    changes = persist_overrides(path, ["train.epochs=7"])
    text = path.read_text()
    assert "# bigmodel: the one declaration" in text
    assert load_params(path).train.epochs == 7
    assert changes[0].startswith("train.epochs = 7 (was 4)")


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml: params file not found"):
        load_params(tmp_path / "nothere.yaml")


def test_every_example_recipe_parses_and_recipes_of_a_dataset_share_their_data_sections():
    """Without the datasets: the files are only parsed and compared, not run."""
    import glob

    from bigmodel_core.config import load_params
    from tests.conftest import REPO

    recipes = {Path(f).stem: load_params(f) for f in sorted(glob.glob(str(REPO / "examples" / "*.yaml")))}
    assert {"imdb-bag", "imdb-transformer", "imdb-bert-base", "ag_news-bag", "ag_news-transformer", "sms_spam-bag",
            "sms_spam-transformer"} <= set(recipes)
    assert recipes["imdb-bert-base"].model.kind == "pretrained" and recipes["imdb-bert-base"].model.backbone
    for ds in ("imdb", "ag_news", "sms_spam"):
        bag, tf = recipes[f"{ds}-bag"], recipes[f"{ds}-transformer"]
        assert bag.model.kind == "bag" and tf.model.kind == "transformer"
        for section in ("data", "clean", "validate", "augment", "split"):  # same rows, same split
            assert getattr(bag, section) == getattr(tf, section), (ds, section)
        assert bag.deploy.model_name != tf.deploy.model_name


def test_the_params_files_are_written_from_the_typed_config():
    from bigmodel_core.config.writer import FILES, head_of, render_params

    for name in FILES:
        text = (REPO / name).read_text()
        assert render_params(head_of(text)) == text, f"{name}: run python -m bigmodel_core.config.writer"


def test_a_key_of_another_model_kind_or_rule_is_refused_naming_it():
    raw = tiny_params_dict()
    raw["model"] = {"kind": "bag", "n_layers": 12}
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert str(e.value).startswith("params.yaml: model.n_layers: model.kind bag takes no n_layers (its keys: ")
    raw["model"] = {"kind": "auto", "n_layers": 12, "buckets": 4096}  # auto: where its candidates start
    assert parse_params(raw).model.n_layers == 12
    raw = tiny_params_dict()
    raw["validate"]["rules"]["too_short"] = {"max_ratio": 3}
    with pytest.raises(ConfigError, match=r"validate\.rules\.too_short\.max_ratio: rule too_short takes no max_ratio"):
        parse_params(raw)
    raw["validate"]["rules"]["too_short"] = {"policy": "warn"}  # the rest from the rule's own defaults
    assert parse_params(raw).validate.rules["too_short"].min_chars == 2


def test_an_override_of_model_kind_drops_the_keys_of_the_kind_the_file_had(tmp_path):
    raw = apply_overrides(tiny_params_dict(), ["model.kind=bag", "model.buckets=4096"])
    assert "n_layers" not in raw["model"] and raw["model"]["buckets"] == 4096
    assert parse_params(raw).model.kind == "bag"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params_dict(), sort_keys=False))
    lines = persist_overrides(path, ["model.kind=linear"])
    assert "model.n_layers removed from " + str(path) + " (model.kind linear takes no n_layers)" in lines
    assert load_params(path).model.kind == "linear"
