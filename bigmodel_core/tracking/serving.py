"""`bigmodel serve`: the champion over HTTP through MLflow's own scoring server.

    bigmodel serve                              # models:/<deploy.model_name>@<champion alias>, 127.0.0.1:5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \
         -d '{"dataframe_records": [{"text": "The striker scored twice"}]}'

The app is mlflow.pyfunc.scoring_server's (what `mlflow models serve --env-manager local` runs:
/invocations, /ping, /health, /version, its JSON/CSV/Parquet parsing and its error answers), served
by uvicorn in this process, so the pyfunc runs this checkout's bigmodel_core. The alias is resolved
once, at start: the server keeps serving that version until it is restarted.

In front of MLflow's app sits a small ASGI guard for what MLflow does not do (its scoring server,
FastAPI under uvicorn, has no request-size setting): a limit on the request body (413 before the
body is parsed), and for JSON bodies the text checks applied to the request as sent. MLflow's
`inputs`/`instances` parsing casts every value to the signature's string type (a null arrives as the
text "None", 5 as "5"), so only the request itself still shows that a value was not a string. The
pyfunc checks again whatever reaches it (CSV and Parquet bodies, `dataframe_*` JSON, in-process
callers), with the row and length limits this module exports to it through the environment, and
the input rules of the model's training (a text they set aside is refused, naming the rule), and
raises MlflowException(INVALID_PARAMETER_VALUE), which MLflow answers with 400.

The guard also answers what MLflow would get wrong: a request without a Content-Type gets 415 naming the
types taken (MLflow's server fails on it with a 500; its protocol requires the header, and guessing JSON
would misread a CSV or Parquet body); a CSV or Parquet body without a `text` column gets 400 naming its
columns (MLflow's answer is its schema enforcement's text); and MLflow's wrapping of a message the pyfunc
raised ("Failed to predict data '<the whole input>'. Error: ...") is taken off, leaving the message.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import io
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from bigmodel_core.errors import BigmodelError

# pandas and MLflow (scoring, pyfunc) are imported where they are used: `bigmodel serve` takes its port first,
# and a taken one is said at once, not after seconds of imports

_DRAIN_BYTES = 256 * 1024 * 1024
_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
#: the content types MLflow's scoring server parses
CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")
# how MLflow's invocations() wraps the message of an MlflowException the model raised
_WRAPPED = re.compile(r"^Failed to predict data '.*'\. \nError: (?P<message>.*)$", re.S)


def resolve(params, root: Path, model_uri: str | None) -> tuple[str, str]:
    """(the URI to load, a line naming what is served). An alias is turned into its version now, so the
    process serves one fixed version even if the alias moves while it runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from bigmodel_core.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(params, root))
    uri = model_uri or f"models:/{params.deploy.model_name}@{params.deploy.champion_alias}"
    if not (uri.startswith("models:/") and "@" in uri):
        return uri, uri
    name, alias = uri[len("models:/") :].rsplit("@", 1)
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as e:
        raise BigmodelError(
            f"{uri}: no model version holds alias {alias!r} of {name!r} ({e.message.splitlines()[0]}); "
            "run the pipeline, or `bigmodel registry history` to see what there is"
        ) from None
    return f"models:/{name}/{mv.version}", f"{name} v{mv.version} ({uri})"


def _json_error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error_code": code, "message": message}).encode()


def _texts_in(body: Any, column: str) -> tuple[list | None, str | None]:
    """(values, problem) of `column` (the served modality's) found in a JSON request in one of MLflow's four
    layouts. (None, None) when the layout is not one we recognise: MLflow's own parsing then answers."""
    if not isinstance(body, dict):
        return None, None
    keys = [k for k in _FORMATS if k in body]
    if len(keys) != 1:
        return None, None
    key = keys[0]
    data = body[key]
    if key == "dataframe_split":
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("columns"), list)
            or not isinstance(data.get("data"), list)
        ):
            return None, None
        if column not in data["columns"]:
            return None, f"dataframe_split has no '{column}' column (columns: {data['columns']})"
        j = data["columns"].index(column)
        rows = data["data"]
        if not all(isinstance(r, list) and len(r) > j for r in rows):
            return None, None
        return [r[j] for r in rows], None
    if isinstance(data, dict):  # {"inputs": {"text": [...]}} and the like: one column by name
        if column not in data:
            return None, f"{key} has no '{column}' field (fields: {list(data)})"
        value = data[column]
        return (value if isinstance(value, list) else [value]), None
    if isinstance(data, str):
        return [data], None
    if not isinstance(data, list):
        return None, None
    if key == "dataframe_records" or (data and all(isinstance(r, dict) for r in data)):
        if not all(isinstance(r, dict) for r in data):
            return None, None
        for i, r in enumerate(data):
            if column not in r:
                return None, f"{key}[{i}] has no '{column}' field (fields: {list(r)})"
        return [r[column] for r in data], None
    return data, None  # {"inputs": ["a", "b"]}: a bare list is the one input column


def table_columns(body: bytes, mime: str) -> list[str] | None:
    """The column names of a CSV (its header row, as pandas reads it: comma-separated, quoted fields) or Parquet
    body; None when they cannot be read (MLflow's parsing then says what is wrong)."""
    try:
        if mime == "text/csv":  # pandas skips blank lines before the header, and a UTF-8 byte order mark
            rows = csv.reader(io.StringIO(body.decode("utf-8").removeprefix("\ufeff")))
            return next((row for row in rows if any(row)), None)
        import pyarrow.parquet as pq

        return list(pq.read_schema(io.BytesIO(body)).names)
    except Exception:  # not UTF-8, not CSV, not Parquet
        return None


def check_request(body: bytes, limits: dict, served=None) -> str | None:
    """Why a JSON request body cannot be scored, or None (including: not for us to say, MLflow will). `served`: the
    served model's input (modalities/served.py; default: text's)."""
    served = served or text_input()
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, or nested past Python's limit
        return f"the request body is not valid JSON ({e}); send e.g. {example(served)}"
    values, problem = _texts_in(parsed, served.column)
    if problem or values is None:
        return problem
    return served.problem(values, allow_empty=False, **limits)


def text_input():
    """The text modality's served input: what a model without one of its own (not a bigmodel pyfunc) is sent."""
    from bigmodel_core import modalities
    from bigmodel_core.modalities.served import served_input

    return served_input(modalities.get("text"))


def example(served) -> str:
    """A request body of the served input's layout, for messages."""
    return json.dumps({"dataframe_records": [{served.column: "..."}]})


class RequestGuard:
    """ASGI middleware in front of MLflow's app: body size limit, JSON text checks, X-Model header."""

    def __init__(self, app, *, max_body_bytes: int, limits: dict, served: str, served_input=None) -> None:
        self.app, self.max_body, self.limits = app, max_body_bytes, limits
        self.served = served.encode("ascii", "replace")
        self.input = served_input or text_input()  # what a request must hold (modalities/served.py)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_tagged(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-model", self.served)]}
            await send(message)

        if scope["path"] != "/invocations" or scope["method"] != "POST":
            return await self.app(scope, receive, send_tagged)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode() or "0"
        too_big = declared.isdigit() and int(declared) > self.max_body
        body, more = bytearray(), True
        while more and not too_big:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            too_big = len(body) > self.max_body
        if too_big:
            await self._drain(receive, more)
            declared_big = declared.isdigit() and int(declared) > self.max_body
            size = f"{int(declared):,} bytes" if declared_big else f"over {self.max_body:,} bytes"
            return await self._answer(
                send_tagged,
                *_json_error(
                    413,
                    "REQUEST_LIMIT_EXCEEDED",
                    f"the request body is {size}; this server takes at most "
                    f"{self.max_body:,} bytes (bigmodel serve --max-body-bytes); split the texts into smaller requests",
                ),
            )
        mime = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if not mime:
            return await self._answer(
                send_tagged,
                *_json_error(
                    415,
                    "BAD_REQUEST",
                    "the request has no Content-Type header; send one of "
                    f"{', '.join(CONTENT_TYPES)}, e.g. -H 'Content-Type: application/json' with " + example(self.input),
                ),
            )
        if mime in ("text/csv", "application/vnd.apache.parquet") and body:
            names = table_columns(bytes(body), mime)
            column = self.input.column
            if names is not None and column not in names:
                kind = "CSV" if mime == "text/csv" else "Parquet"
                return await self._answer(
                    send_tagged,
                    *_json_error(
                        400,
                        "INVALID_PARAMETER_VALUE",
                        f"the {kind} body has no '{column}' column (columns: "
                        f"{', '.join(map(repr, names)) or 'none'}); the {self.input.noun} to classify go in a column "
                        f"named {column}",
                    ),
                )
        if mime == "application/json":
            data = bytes(body)
            # a large body is parsed off the event loop, so /ping and other requests keep being answered
            problem = (
                check_request(data, self.limits, self.input)
                if len(data) < 65536
                else await asyncio.to_thread(check_request, data, self.limits, self.input)
            )
            if problem:
                return await self._answer(send_tagged, *_json_error(400, "INVALID_PARAMETER_VALUE", problem))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        await self.app(scope, replay, _unwrapping(send_tagged))

    async def _drain(self, receive, more: bool) -> None:
        """Read and drop the rest of a body that is too big (up to a bound), so that the client, which
        is usually still sending, gets to read the 413 instead of a reset connection."""
        dropped = 0
        while more and dropped < _DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)

    @staticmethod
    async def _answer(send, status: int, content: bytes) -> None:
        # A body left unread (too big): the server closes the connection after this answer.
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _unwrapping(send):
    """`send` for MLflow's answer to /invocations: a 4xx JSON error whose message MLflow wrapped around the
    pyfunc's ("Failed to predict data '<input>'. Error: <message>") is sent with the message alone."""
    held: dict = {}

    async def send_unwrapped(message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held["start"], held["body"] = message, b""  # held until the body is complete
            return
        if "start" not in held:
            return await send(message)
        held["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = held["body"]
        try:
            doc = json.loads(body)
        except ValueError:  # MLflow's text/plain answers (415) and anything else that is not JSON: as they are
            doc = None
        text = doc.get("message") if isinstance(doc, dict) else None
        found = _WRAPPED.match(text) if isinstance(text, str) else None
        if found:
            doc = {"error_code": doc.get("error_code", "BAD_REQUEST"), "message": found.group("message")}
            body = json.dumps(doc).encode()
        start = held["start"]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return send_unwrapped


def build_app(model, *, served: str, max_body_bytes: int, max_rows: int, max_text_chars: int):
    """MLflow's scoring app for `model`, behind the guard; the pyfunc reads the same limits from the environment."""
    from mlflow.pyfunc import scoring_server

    from bigmodel_core.tracking.pyfunc import MAX_CHARS_ENV, MAX_ROWS_ENV

    os.environ[MAX_ROWS_ENV], os.environ[MAX_CHARS_ENV] = str(max_rows), str(max_text_chars)
    limits = {"max_rows": max_rows, "max_chars": max_text_chars}
    served_input = getattr(_python_model(model), "served", None)  # a bigmodel model's: its bundle's modality's
    app = scoring_server.init(model)
    return RequestGuard(app, max_body_bytes=max_body_bytes, limits=limits, served=served, served_input=served_input)


def _python_model(model):
    """The PythonModel inside a loaded pyfunc, or None (a model of another flavor: it is sent texts)."""
    try:
        return model.unwrap_python_model()
    except Exception:
        return None


def listen_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound now (as uvicorn would bind it: SO_REUSEADDR, IPv6 for a host with ':'), so that a
    taken port is said before the model is loaded or anything is printed, and no other process can take the port
    between this check and the server's start. Raises PortInUse, or ConfigError for an address this machine cannot
    listen on."""
    from bigmodel_core.errors import ConfigError, PortInUse

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{host}:{port} is already in use by another process: nothing was started; stop what "
                f"listens there, or choose another port (bigmodel serve --port {port + 1})"
            ) from None
        raise ConfigError(f"--host {host} --port {port}: cannot listen there: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    params,
    root: Path,
    *,
    model_uri: str | None,
    host: str,
    port: int,
    max_body_bytes: int,
    max_rows: int,
    max_text_chars: int,
    timeout: int | None,
    access_log: bool,
) -> None:
    """Take the port, resolve, load, print what is served, and serve until interrupted."""
    import uvicorn

    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    if timeout is not None:  # read by scoring_server.init: a request running longer gets 504
        os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(timeout)
    sock = listen_socket(host, port)
    try:
        uri, served = resolve(params, root, model_uri)
        model = load_pyfunc(params, root, uri)
        app = build_app(
            model, served=uri, max_body_bytes=max_body_bytes, max_rows=max_rows, max_text_chars=max_text_chars
        )
        print(
            f"serving {served} on http://{host}:{port}  (POST /invocations, GET /ping); "
            f"limits: {max_body_bytes:,} bytes, {max_rows:,} texts, {max_text_chars:,} characters per text. "
            "The alias was resolved now: restart to serve a newer champion.",
            flush=True,
        )
        config = uvicorn.Config(
            app, host=host, port=port, log_level="info", access_log=access_log, timeout_graceful_shutdown=5
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
