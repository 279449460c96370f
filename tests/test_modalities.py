"""The modality seam: data.modality names one modality (text, the only one shipped); the stage schemas, the clean
stage's cleaner and the served model's input come from the modality's registry entries, so a modality registered
in this process (a toy one: three numbers per row) is what a stage runs, with no edit of the stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from bigmodel_core import modalities
from bigmodel_core.config import parse_params
from bigmodel_core.data import schemas
from bigmodel_core.errors import ConfigError, DataError
from bigmodel_core.modalities.cleaners import CLEANERS
from bigmodel_core.modalities.served import SERVED, InputProblem
from tests.conftest import tiny_params_dict


def test_data_modality_defaults_to_text_and_refuses_another_naming_the_key():
    assert parse_params(tiny_params_dict()).data.modality == "text"
    raw = tiny_params_dict()
    raw["data"]["modality"] = "image"
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert "data.modality" in str(e.value) and "'text'" in str(e.value) and "image" in str(e.value)


def test_the_registry_gives_text_by_default_with_the_text_schemas():
    text = modalities.get()
    assert text is modalities.get(parse_params(tiny_params_dict()).data.modality)
    assert (text.name, text.column, text.noun) == ("text", "text", "texts")
    assert "text" in modalities.names()
    for name in ("RAW", "CLEAN", "VALIDATED", "QUARANTINE", "AUGMENTED", "SPLIT"):  # the module's are text's
        assert list(getattr(text.schemas, name).columns) == list(getattr(schemas, name).columns), name
    assert CLEANERS(text).counters == ("changed", "truncated_to_max_chars")


def test_an_unknown_modality_or_a_missing_facet_names_data_modality():
    with pytest.raises(ConfigError, match=r"data.modality: unknown modality 'image'; known: .*text"):
        modalities.get("image")
    with pytest.raises(ValueError, match="cannot be removed"):
        modalities.unregister("text")
    with _toy(cleaner=False) as toy, pytest.raises(ConfigError, match=r"data.modality: modality 'toy' has no cleaner"):
        CLEANERS(toy)


# --------------------------------------------------------------------------- a toy modality, in-process
WIDTH = 3


def _three_numbers(series: pd.Series) -> pd.Series:
    return series.map(lambda v: v is not None and len(v) == WIDTH)


TOY_CONTENT = schemas.Content(
    raw={"features": pa.Column(object, nullable=True)},
    passed={"features": pa.Column(object, pa.Check(_three_numbers))},
    group_key="Hash of the rounded features.",
)


class ToyCleaner:
    """Clips every feature to [0, 1]; counts the rows it changed."""

    counters = ("clipped",)

    def clean(self, batch, params):
        import pyarrow as pa_

        at = batch.schema.get_field_index("features")
        rows = batch.column(at).to_pylist()
        clipped = [None if r is None else [min(max(x, 0.0), 1.0) for x in r] for r in rows]
        changed = sum(a != b for a, b in zip(rows, clipped, strict=True))
        columns = [
            pa_.array(clipped, type=batch.schema.field(at).type) if i == at else batch.column(i)
            for i in range(batch.num_columns)
        ]
        return pa_.RecordBatch.from_arrays(columns, schema=batch.schema), {"clipped": changed}


class ToyInput:
    """A request holds `features`: lists of three numbers."""

    def __init__(self, modality):
        self.column, self.noun = modality.column, "vectors"

    def values(self, model_input):
        if self.column not in model_input:
            raise InputProblem(f"input needs a '{self.column}' column")
        return list(model_input[self.column])

    def problem(self, values, *, allow_empty=True, **limits):
        for i, v in enumerate(values):
            if not isinstance(v, (list, np.ndarray)) or len(v) != WIDTH:
                return f"{self.column}[{i}] is not a list of {WIDTH} numbers"
        return None

    def prepare(self, predictor, values):
        return [np.asarray(v, dtype=np.float32) for v in values], None


class _toy:
    """Registers the toy modality and its facets for the `with` block."""

    def __init__(self, cleaner: bool = True) -> None:
        self.cleaner = cleaner

    def __enter__(self) -> modalities.Modality:
        self.modality = modalities.Modality(name="toy", column="features", content=TOY_CONTENT, noun="vectors")
        modalities.register(self.modality)
        if self.cleaner:
            CLEANERS.register("toy", ToyCleaner())
        SERVED.register("toy", ToyInput)
        return self.modality

    def __exit__(self, *exc) -> None:
        CLEANERS.unregister("toy")
        SERVED.unregister("toy")
        modalities.unregister("toy")


def _toy_raw(rows: list) -> pd.DataFrame:
    n = len(rows)
    return pd.DataFrame(
        {
            "row_id": [f"{i:016x}" for i in range(n)],
            "source": "toy",
            "source_file": "toy.parquet",
            "source_row": pd.Series(range(1, n + 1), dtype="int64"),
            "features": rows,
            "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2),
            "fixed_split": pd.Series([None] * n, dtype="str"),
        }
    )


def test_a_toy_modality_brings_its_own_schemas():
    with _toy() as toy:
        assert modalities.get("toy") is toy
        frame = _toy_raw([[0.1, 0.2, 0.3], None])
        toy.schemas.RAW.validate(frame)
        assert "features" in toy.schemas.SPLIT.columns and "text" not in toy.schemas.SPLIT.columns
        assert toy.schemas.VALIDATED.columns["group_key"].description == "Hash of the rounded features."
        with pytest.raises(Exception, match="text"):  # a text table is not a toy table, and the other way round
            toy.schemas.RAW.validate(frame.drop(columns="features").assign(text="x"))
        with pytest.raises(Exception, match="features"):
            schemas.RAW.validate(frame)
        passed = frame.head(1).drop(columns="fixed_split").assign(group_key="k", fixed_split=None)
        toy.schemas.VALIDATED.validate(passed)
        with pytest.raises(Exception, match="_three_numbers"):
            toy.schemas.VALIDATED.validate(passed.assign(features=[[1.0, 2.0]]))
        assert toy.values(passed) == [[0.1, 0.2, 0.3]]


@pytest.mark.stage
def test_the_clean_stage_runs_the_cleaner_of_the_configured_modality(tmp_path):
    from bigmodel_core.io import read_table, write_table
    from bigmodel_core.paths import Paths
    from bigmodel_core.stages import clean

    params = parse_params(tiny_params_dict())
    paths = Paths(tmp_path)
    with _toy() as toy:
        toy_params = params.model_copy(update={"data": params.data.model_copy(update={"modality": "toy"})})
        paths.raw.mkdir(parents=True)
        write_table(
            _toy_raw([[0.5, 2.0, -1.0], [0.1, 0.2, 0.3], None, [1.5, 0.0, 0.0]]),
            paths.raw / "rows.parquet",
            toy.schemas.RAW,
        )
        report = clean.run(toy_params, paths)
        assert report == {"rows": 4, "clipped": 2}  # the toy's counters, not text's
        out = read_table(paths.clean / "rows.parquet", toy.schemas.CLEAN)
        assert [None if v is None else list(v) for v in out["features"]] == [
            [0.5, 1.0, 0.0],
            [0.1, 0.2, 0.3],
            None,
            [1.0, 0.0, 0.0],
        ]
        # the text modality's clean stage refuses the same table: it has no text column
        with pytest.raises(DataError, match="breaks schema raw: column text is missing"):
            clean.run(params, paths)


def test_the_served_model_takes_the_input_of_its_bundles_modality():
    from mlflow.exceptions import MlflowException

    from bigmodel_core.tracking.pyfunc import TextClassifierModel
    from bigmodel_core.tracking.serving import check_request

    class Predictor:  # what the pyfunc needs of a loaded bundle
        modality, labels, input_rules = "toy", ["a", "b"], None

        def predict_proba(self, inputs, clean=True):
            assert not clean and all(isinstance(x, np.ndarray) for x in inputs)
            return np.array([[x.sum() > 1, x.sum() <= 1] for x in inputs], dtype=np.float64)

    with _toy():
        model = TextClassifierModel()
        model.predictor = Predictor()
        out = model.predict(None, pd.DataFrame({"features": [[0.9, 0.9, 0.9], [0.0, 0.1, 0.0]]}))
        assert out["label"].tolist() == ["a", "b"]
        with pytest.raises(MlflowException, match="input needs a 'features' column"):
            model.predict(None, pd.DataFrame({"text": ["a text"]}))
        with pytest.raises(MlflowException, match=r"features\[1\] is not a list of 3 numbers"):
            model.predict(None, pd.DataFrame({"features": [[0.0, 0.0, 0.0], [1.0]]}))
        # the server's own check of a JSON request asks the same served input
        served = model.served
        body = json.dumps({"dataframe_records": [{"features": [1, 2, 3]}, {"features": "x"}]}).encode()
        assert check_request(body, {}, served) == "features[1] is not a list of 3 numbers"
        body = json.dumps({"dataframe_records": [{"text": "a text"}]}).encode()
        assert check_request(body, {}, served) == "dataframe_records[0] has no 'features' field (fields: ['text'])"
        assert check_request(body, {"max_rows": 10, "max_chars": 100}) is None  # text's, by default
