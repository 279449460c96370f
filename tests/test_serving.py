"""Serving tier: `bigmodel serve` as a real process (MLflow's scoring server on a free port), and
`bigmodel predict --input/--output`, against the tiny champion of a copy of the session's completed run.

    .venv/bin/python -m pytest -q tests/test_serving.py
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from bigmodel_core.errors import DataError
from bigmodel_core.io import read_table
from bigmodel_core.config import parse_params
from bigmodel_core.paths import Paths
from tests.conftest import copy_workspace, env_for, tiny_params_dict

LIMITS = {"--max-body-bytes": 256 * 1024, "--max-rows": 500, "--max-text-chars": 5000}
GOOD = {"dataframe_records": [{"text": "The striker scored twice in the derby"}, {"text": "Shares and profit rose"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, request, *args: str) -> tuple[str, Path]:
    """`bigmodel serve` in a subprocess; returns its base URL once /ping answers. Killed at teardown."""
    port = _free_port()
    log = root.parent / f"serve-{port}.log"
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "bigmodel_core.cli", "serve", "--port", str(port), *args],
                            cwd=root, env=env_for(root), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        out.close()

    request.addfinalizer(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"bigmodel serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return url, log
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"bigmodel serve did not answer /ping in 120s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def pipeline(trained_ws, tmp_path_factory):
    """(root, params, paths, None): a copy of the session's completed `bigmodel run` (conftest.trained_ws) with
    the tiny params, tiny-model v1 its champion; the working directory for the module, as the CLI reads it."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = copy_workspace(trained_ws, tmp_path_factory.mktemp("serving") / "ws")
    mp.chdir(root)
    yield root, parse_params(tiny_params_dict()), Paths(root), None
    mp.undo()


@pytest.fixture(scope="module")
def server(pipeline, request):  # noqa: F811
    root = pipeline[0]
    args = [str(x) for kv in LIMITS.items() for x in kv]
    return start_server(root, request, *args, "--no-access-log")


def post(url: str, body, content_type: str | None = "application/json", **kw) -> requests.Response:
    """POST to /invocations; content_type None sends no Content-Type header at all."""
    data = json.dumps(body) if not isinstance(body, (bytes, str)) and not hasattr(body, "__next__") else body
    if isinstance(data, str):
        data = data.encode()  # a str body would make requests send a Content-Type of its own
    headers = {} if content_type is None else {"Content-Type": content_type}
    return requests.post(f"{url}/invocations", data=data, headers=headers, timeout=60, **kw)


def assert_good(url: str, labels: list[str]) -> None:
    r = post(url, GOOD)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert len(rows) == 2 and all(row["label"] in labels for row in rows)
    for row in rows:
        assert abs(sum(row[f"prob_{l}"] for l in labels) - 1) < 1e-5


def test_serve_names_the_version_it_serves(server, pipeline):  # noqa: F811
    url, log = server
    assert "serving tiny-model v1 (models:/tiny-model@champion) on http://127.0.0.1:" in log.read_text()
    r = requests.get(f"{url}/health", timeout=5)
    assert r.status_code == 200 and r.headers["x-model"] == "models:/tiny-model/1"
    assert_good(url, pipeline[1].data.labels)


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


# (case, content type, body, status, words the message must contain)
BAD = [
    ("not JSON", "application/json", b'{"dataframe_records": [{"text": "a"}', 400, "not valid JSON"),
    ("nested past the parser's depth", "application/json", b"[" * 50_000 + b"]" * 50_000, 400, "not valid JSON"),
    ("not UTF-8", "application/json", b'{"inputs": ["\xff\xfe"]}', 400, "not valid JSON"),
    ("no text field, records", "application/json", {"dataframe_records": [{"txt": "a"}]}, 400,
     "dataframe_records[0] has no 'text' field"),
    ("no text column, split", "application/json", {"dataframe_split": {"columns": ["body"], "data": [["a"]]}}, 400,
     "dataframe_split has no 'text' column"),
    ("no text field, inputs", "application/json", {"inputs": {"body": ["a"]}}, 400, "inputs has no 'text' field"),
    ("no text column, CSV", "text/csv", "body\nsome words\n", 400,
     "the CSV body has no 'text' column (columns: 'body'); the texts to classify go in a column named text"),
    ("no text column, Parquet", "application/vnd.apache.parquet", _parquet(pd.DataFrame({"body": ["a b"]})), 400,
     "the Parquet body has no 'text' column (columns: 'body')"),
    ("no Content-Type", None, b'{"inputs": ["The striker scored"]}', 415,
     "the request has no Content-Type header; send one of application/json, text/csv, application/vnd.apache.parquet"),
    ("lone surrogate", "application/json", b'{"inputs": ["fine", "a \\ud800 b"]}', 400,
     "text[1] contains a lone surrogate (U+D800) at character 3, which is not a character"),
    ("lone surrogate, split", "application/json", b'{"dataframe_split": {"columns": ["text"], "data": [["\\udfff"]]}}',
     400, "text[0] contains a lone surrogate (U+DFFF)"),
    # what training sets aside (the tiny params: empty_text, too_short, control_chars, undecodable quarantine)
    ("empty text", "application/json", {"inputs": [""]}, 400,
     "text[0] breaks input rule empty_text: text is empty or whitespace only; this model's training set such texts "
     "aside (validate.rules.empty_text.policy quarantine)"),
    ("whitespace only, records", "application/json", {"dataframe_records": [{"text": "a fine text"}, {"text": " \t\n "}]},
     400, "text[1] breaks input rule empty_text: text is empty or whitespace only (after the model's cleaning)"),
    ("markup only, instances", "application/json", {"instances": [{"text": "<p> </p>"}]}, 400,
     "text[0] breaks input rule empty_text"),
    ("one character", "application/json", {"inputs": {"text": ["x"]}}, 400,
     "text[0] breaks input rule too_short: text has 1 character(s) and 1 word(s), under min_chars 2"),
    ("control character, CSV", "text/csv", "text\nbell\x07here\n", 400,
     "text[0] breaks input rule control_chars: control character U+0007 at character 5"),
    ("U+FFFD, Parquet", "application/vnd.apache.parquet", _parquet(pd.DataFrame({"text": ["ok text", "caf\ufffd"]})),
     400, "text[1] breaks input rule undecodable: text has U+FFFD at character 4"),
    ("whitespace only, CSV", "text/csv", 'text\n" "\n', 400, "text[0] breaks input rule empty_text"),
    ("numbers, records", "application/json", {"dataframe_records": [{"text": "a"}, {"text": 5}]}, 400,
     "text[1] is a number (5); every text must be a string"),
    ("numbers, inputs", "application/json", {"inputs": [1, 2]}, 400, "text[0] is a number (1)"),
    ("a list as a text", "application/json", {"inputs": {"text": [["a"]]}}, 400, "text[0] is a list"),
    ("boolean, instances", "application/json", {"instances": [{"text": True}]}, 400, "text[0] is a boolean"),
    ("null, records", "application/json", {"dataframe_records": [{"text": None}]}, 400, "text[0] is null"),
    ("null, split", "application/json", {"dataframe_split": {"columns": ["text"], "data": [["a"], [None]]}}, 400,
     "text[1] is null"),
    ("null, inputs", "application/json", {"inputs": {"text": ["a", None]}}, 400, "text[1] is null"),
    ("numbers, Parquet", "application/vnd.apache.parquet", _parquet(pd.DataFrame({"text": [3, 4]})), 400,
     "Incompatible input types for column text"),  # MLflow's own schema check
    ("null, Parquet", "application/vnd.apache.parquet", _parquet(pd.DataFrame({"text": ["a", None]})), 400,
     "text[1] is null"),  # the pyfunc's
    ("empty list, inputs", "application/json", {"inputs": []}, 400, "no texts to classify"),
    ("empty list, records", "application/json", {"dataframe_records": []}, 400, "no texts to classify"),
    ("empty list, split", "application/json", {"dataframe_split": {"columns": ["text"], "data": []}}, 400,
     "no texts to classify"),
    ("empty CSV", "text/csv", "text\n", 400, "no texts to classify"),
    ("NUL byte", "application/json", {"inputs": ["fine", "bad\u0000text"]}, 400, "text[1] contains a NUL character"),
    ("NUL byte, CSV", "text/csv", "text\nbad\x00text\n", 400, "text[0] contains a NUL character"),
    ("oversized body", "application/json", {"inputs": ["word " * 60_000]}, 413,
     "this server takes at most 262,144 bytes"),
    ("too many texts", "application/json", {"inputs": ["a"] * 501}, 400, "501 texts in one request, at most 500"),
    ("too long a text", "application/json", {"inputs": ["x" * 5001]}, 400, "5,001 characters long, at most 5,000"),
    ("wrong content type", "text/plain", "The striker scored", 415, "only supports the following content types"),
]


@pytest.mark.parametrize("case,content_type,body,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_4xx_with_a_message_and_the_server_keeps_serving(server, pipeline, case, content_type,  # noqa: F811
                                                                           body, status, message):
    url, _ = server
    r = post(url, body, content_type)
    assert r.status_code == status, (case, r.text[:500])
    assert message in r.text, r.text[:500]
    assert "Failed to predict data" not in r.text  # MLflow's wrapping, with the whole input in it, is taken off
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "REQUEST_LIMIT_EXCEEDED")
    assert_good(url, pipeline[1].data.labels)


def test_oversized_body_without_content_length(server, pipeline):  # noqa: F811
    """A chunked body declares no size: it is counted as it arrives."""
    url, _ = server

    def chunks():
        yield b'{"inputs": ["'
        for _ in range(40):
            yield b"word " * 2000
        yield b'"]}'

    r = post(url, chunks())
    assert r.status_code == 413 and "at most 262,144 bytes" in r.json()["message"], r.text[:300]
    assert_good(url, pipeline[1].data.labels)


def test_served_predictions_match_in_process_pyfunc(server, pipeline):  # noqa: F811
    """200 raw texts in one request: the same labels, probabilities within 1e-5 of the pyfunc in this process."""
    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    url, _ = server
    root, params, paths, _ = pipeline
    # raw texts, as a user sends them, of rows that validate let through (the model refuses what it set aside)
    raw = read_table(paths.raw / "rows.parquet").set_index("row_id")["text"]
    texts = raw.loc[read_table(paths.validated / "rows.parquet")["row_id"]].tolist()[:200]
    assert len(texts) == 200
    r = post(url, {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}})
    assert r.status_code == 200, r.text[:500]
    served = pd.DataFrame(r.json()["predictions"])
    local = load_pyfunc(params, root, "models:/tiny-model/1").predict(pd.DataFrame({"text": texts}))
    assert list(served.columns) == list(local.columns)
    assert served["label"].tolist() == local["label"].tolist()
    probs = [c for c in local.columns if c.startswith("prob_")]
    assert np.abs(served[probs].to_numpy() - local[probs].to_numpy()).max() <= 1e-5


def test_pyfunc_checks_in_process_too(pipeline):  # noqa: F811
    """Loaded in-process the pyfunc refuses the same bad values with MlflowException(INVALID_PARAMETER_VALUE);
    an empty frame is still fine there (the empty-request and size rules are the server's)."""
    from mlflow.exceptions import MlflowException

    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    model = load_pyfunc(pipeline[1], pipeline[0], "models:/tiny-model/1")
    for frame, words in [(pd.DataFrame({"text": ["a", None]}), "text[1] is null"),
                         (pd.DataFrame({"text": ["a\x00"]}), "NUL"),
                         (pd.DataFrame({"body": ["a"]}), "missing inputs ['text']"),
                         (pd.DataFrame({"text": ["a fine text", ""]}), "text[1] breaks input rule empty_text"),
                         (pd.DataFrame({"text": ["   "]}), "text[0] breaks input rule empty_text"),
                         (pd.DataFrame({"text": ["x"]}), "text[0] breaks input rule too_short")]:
        with pytest.raises(MlflowException) as err:
            model.predict(frame)
        assert words in err.value.message and err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert len(model.predict(pd.DataFrame({"text": pd.Series([], dtype=object)}))) == 0


def test_served_verdicts_are_validates(server, pipeline):  # noqa: F811
    """A served model refuses what its training refuses: each adversarial text, sent alone to `bigmodel serve` and
    to the pyfunc in-process, is refused naming the rule that validate (quality.check, after the clean stage's
    cleaning, under the params the model was trained with) gives its row, or scored when validate lets it pass."""
    import re

    from mlflow.exceptions import MlflowException

    from bigmodel_core.config import ValidateParams
    from bigmodel_core.tracking.mlflow_store import load_pyfunc
    from tests.test_cleaning_quality import ADVERSARIAL, validate_verdicts

    url, _ = server
    root, params, paths, _ = pipeline
    rules = params.validate.model_dump()
    rules["rules"]["label_noise"]["sample_rows"] = 0  # a model over one row says nothing; the text rules decide
    expected = validate_verdicts(ADVERSARIAL, ValidateParams(**rules), params.clean)
    assert {"empty_text", "too_short", "control_chars", "undecodable", None} <= set(expected)  # tiny params: html_left,
    assert ADVERSARIAL[expected.index(None)]                                                   # too_long only warn
    model = load_pyfunc(params, root, "models:/tiny-model/1")
    served, in_process = [], []
    for text in ADVERSARIAL:
        r = post(url, {"inputs": [text]})
        assert r.status_code in (200, 400), r.text[:300]
        found = re.search(r"text\[0\] breaks input rule (\w+): ", r.json().get("message", ""))
        assert (r.status_code == 400) == bool(found), r.text[:300]
        served.append(found.group(1) if found else None)
        try:
            model.predict(pd.DataFrame({"text": [text]}))
            in_process.append(None)
        except MlflowException as e:
            assert e.error_code == "INVALID_PARAMETER_VALUE"
            in_process.append(re.search(r"breaks input rule (\w+)", e.message).group(1))
    assert served == expected and in_process == expected
    assert_good(url, params.data.labels)


def test_a_bundle_without_input_rules_scores_what_it_did(pipeline, tmp_path):  # noqa: F811
    """A model saved before bundles kept the input rules: it loads, has none, and scores an empty text as before
    (the string, NUL and surrogate checks and the server's limits still apply)."""
    import shutil

    from bigmodel_core.models.bundle import META, Predictor
    from bigmodel_core.tracking.pyfunc import TextClassifierModel

    old = tmp_path / "bundle"
    shutil.copytree(pipeline[2].model, old)
    meta = json.loads((old / META).read_text())
    assert set(meta["input_rules"]) == {"empty_text", "undecodable", "too_short", "too_long", "control_chars", "html_left"}
    del meta["input_rules"]
    (old / META).write_text(json.dumps(meta))
    model = TextClassifierModel()
    model.predictor = Predictor(old)
    assert model.predictor.input_rules is None and model.refusal(["", "x"]) is None
    out = model.predict(None, pd.DataFrame({"text": ["", "x"]}))
    assert len(out) == 2 and set(out["label"]) <= set(pipeline[1].data.labels)
    assert Predictor(pipeline[2].model).input_rules.rules["empty_text"].policy == "quarantine"


# --------------------------------------------------------------------------- bigmodel predict --input/--output


def _cli(*args: str):
    from typer.testing import CliRunner

    from bigmodel_core.cli import app

    return CliRunner().invoke(app, list(args))


def _write(df: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False)
    return pd.read_json(path, lines=True, dtype=False)


@pytest.mark.parametrize("ext_in,ext_out", [(".parquet", ".csv"), (".csv", ".jsonl"), (".jsonl", ".parquet")])
def test_predict_file_round_trip(pipeline, tmp_path, ext_in, ext_out):  # noqa: F811
    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    root, params, paths, _ = pipeline
    raw = read_table(paths.raw / "rows.parquet")
    rows = raw[raw["row_id"].isin(read_table(paths.validated / "rows.parquet")["row_id"])].head(70)  # texts it scores
    src = pd.DataFrame({"id": range(len(rows)), "text": rows["text"].tolist(), "label": rows["label"].fillna("").tolist()})
    src.loc[3, "text"] = "NA"  # a text (CSV must not turn it into a missing value)
    inp, out = tmp_path / f"in{ext_in}", tmp_path / f"out{ext_out}"
    _write(src, inp)
    res = _cli("predict", "--input", str(inp), "--output", str(out), "--batch-size", "16")
    assert res.exit_code == 0, res.output
    assert f"scored 70 rows of {inp} into {out}" in res.output
    assert "the input's are kept renamed: 'label' as 'label_input'" in res.output
    got = _read(out)
    probs = [f"prob_{l}" for l in params.data.labels]
    assert list(got.columns) == ["id", "text", "label_input", "label", *probs]
    assert got["id"].tolist() == list(range(70)) and got["text"].tolist() == src["text"].tolist()
    assert got["label_input"].fillna("").astype(str).tolist() == src["label"].tolist()  # CSV: empty cell = missing
    local = load_pyfunc(params, root, "models:/tiny-model/1").predict(src[["text"]])
    assert got["label"].tolist() == local["label"].tolist()
    assert np.abs(got[probs].to_numpy(dtype=float) - local[probs].to_numpy()).max() <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([inp.name, out.name])  # no temp file left


def test_predict_file_errors_name_the_file_and_leave_no_output(pipeline, tmp_path):  # noqa: F811
    good = tmp_path / "good.csv"
    pd.DataFrame({"text": ["a goal", "shares"]}).to_csv(good, index=False)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous output")
    cases = [
        (["--input", str(tmp_path / "missing.csv"), "--output", str(out)], "missing.csv: input file not found"),
        (["--input", str(good), "--output", str(tmp_path / "out.xlsx")], "out.xlsx: unknown output format '.xlsx'"),
        (["--input", str(tmp_path / "in.txt"), "--output", str(out)], "in.txt: unknown input format '.txt'"),
        (["--input", str(good)], "--input and --output go together"),
        (["some text", "--input", str(good), "--output", str(out)], "not both"),
        ([], "nothing to classify"),
    ]
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"body": "a"}\n{"body": "b"}\n')
    cases.append((["--input", str(no_text), "--output", str(out)], "no_text.jsonl: no 'text' column (columns: body)"))
    nulls = tmp_path / "nulls.parquet"
    pd.DataFrame({"text": ["a", "b", None]}).to_parquet(nulls)
    cases.append((["--input", str(nulls), "--output", str(out)], "nulls.parquet: row 3, column 'text' is null"))
    nul = tmp_path / "nul.jsonl"
    nul.write_text('{"text": "ok"}\n{"text": "bad\\u0000"}\n')
    cases.append((["--input", str(nul), "--output", str(out)], "nul.jsonl: row 2, column 'text' contains a NUL"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases.append((["--input", str(empty), "--output", str(out)], "empty.csv: the file is empty"))
    # a text the model's training set aside: the whole file is refused, naming the row and the rule
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"text": ["a goal", "shares", ""]}).to_csv(blank, index=False)
    cases.append((["--input", str(blank), "--output", str(out)],
                  "blank.csv: row 3, column 'text' breaks input rule empty_text: text is empty or whitespace only"))
    cases.append((["a goal", " "], "cannot classify: text[1] breaks input rule empty_text"))
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        res = _cli("predict", *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert out.read_bytes() == b"previous output"
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp file


@pytest.mark.unit
def test_score_file_failing_mid_way_writes_nothing(tmp_path):
    from bigmodel_core.tracking.scoring import score_file

    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    pd.DataFrame({"text": [f"text {i}" for i in range(10)]}).to_csv(inp, index=False)
    calls = []

    def flaky(frame: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(frame))
        if len(calls) == 2:
            raise DataError("the model broke on the second batch")
        return pd.DataFrame({"label": ["x"] * len(frame)})

    with pytest.raises(DataError, match="second batch"):
        score_file(flaky, inp, out, batch_size=4)
    assert calls == [4, 4] and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# --------------------------------------------------------------------------- alias resolution


def test_serve_with_an_unknown_alias_fails_with_a_message(pipeline):  # noqa: F811
    res = _cli("serve", "--model-uri", "models:/tiny-model@nosuchalias")
    assert res.exit_code == 1 and "models:/tiny-model@nosuchalias: no model version holds alias 'nosuchalias'" in res.output


def test_restart_serves_the_new_champion(server, pipeline, request):  # noqa: F811
    """The alias is resolved at start: the running server keeps v1, a restarted one serves v2."""
    import mlflow

    from bigmodel_core.tracking.store import tracking_uri

    root, params, _, _ = pipeline
    client = mlflow.MlflowClient(tracking_uri(params, root))
    v1 = client.get_model_version("tiny-model", "1")
    v2 = client.create_model_version("tiny-model", v1.source, run_id=v1.run_id)
    client.set_registered_model_alias("tiny-model", "champion", v2.version)
    request.addfinalizer(lambda: client.set_registered_model_alias("tiny-model", "champion", "1"))
    url2, log2 = start_server(root, request, "--no-access-log")
    assert f"serving tiny-model v{v2.version} (models:/tiny-model@champion)" in log2.read_text()
    assert post(url2, GOOD).headers["x-model"] == f"models:/tiny-model/{v2.version}"
    assert post(server[0], GOOD).headers["x-model"] == "models:/tiny-model/1"
