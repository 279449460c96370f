"""Serving speed: `bigmodel serve` (MLflow's scoring server, over HTTP) beside in-process pyfunc.predict.

Run from the repository root:

    .venv/bin/python benchmarks/serving.py
    .venv/bin/python benchmarks/serving.py --model-uri models:/bigmodel-demo@champion --tracking-uri sqlite:///mlflow.db

Without --model-uri it first trains and registers the demo model (the repo's params.yaml, all eight
stages in-process) in a temporary workspace with its own SQLite tracking store. Then it starts
`bigmodel serve --no-access-log` on a free port of 127.0.0.1 in a subprocess, loads the same model
version in this process (the version the server names in its X-Model header), and measures:

- single: one text per request / per predict call;
- batched: --batch-size texts per request / per predict call.

Texts come from the demo generator (seed 11, not the training seed), in the same order for both
sides. Each side gets untimed warm-up calls; then the timed calls alternate, server then in-process
then in-process then server, so both see the same machine state. A server call is timed from
encoding the JSON body to decoding the JSON answer on one keep-alive connection (the client is this
Python process); an in-process call from building the DataFrame to the returned frame. Printed:
p50, p99, calls/s and texts/s (sequential: one call at a time), the server / in-process ratios, and
the targets: single-request p99 <= 20 ms, batched server throughput >= 0.5 x in-process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train_demo(work: Path) -> tuple[str, str]:
    """All eight stages on the repo's params.yaml in `work`; returns (model URI, tracking URI)."""
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    (work / "data").mkdir(parents=True)
    shutil.copy2(REPO / "params.yaml", work / "params.yaml")
    if (REPO / "data" / "sources").is_dir():
        shutil.copytree(REPO / "data" / "sources", work / "data" / "sources")
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    params = load_params(work / "params.yaml")
    cwd = Path.cwd()
    os.chdir(work)
    try:
        for name in stages.STAGES:
            t0 = time.perf_counter()
            stages.get(name).run(params, Paths(work))
            print(f"  stage {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        os.chdir(cwd)
    return f"models:/{params.deploy.model_name}@{params.deploy.champion_alias}", tracking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_uri: str, tracking: str, cwd: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bigmodel-serve-", suffix=".log")[1])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bigmodel_core.cli", "serve", "--model-uri", model_uri, "--port", str(port),
           "--no-access-log", "--params", str(cwd / "params.yaml")]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bigmodel serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port, log
        except OSError:
            pass
        time.sleep(0.2)
    stop(proc)
    sys.exit(f"bigmodel serve did not answer /ping in 180s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Client:
    """One keep-alive connection; `call(texts)` returns (seconds, predictions, headers)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, texts: list[str]):
        t0 = time.perf_counter()
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}})
        self.conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            sys.exit(f"server answered {resp.status}: {payload[:500]!r}")
        preds = json.loads(payload)["predictions"]
        return time.perf_counter() - t0, preds, dict(resp.getheaders())


def local_call(model, texts: list[str]):
    import pandas as pd

    t0 = time.perf_counter()
    out = model.predict(pd.DataFrame({"text": texts}))
    return time.perf_counter() - t0, out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def measure(client: Client, model, groups: list[list[str]], warmup: int) -> dict:
    """Alternate server and in-process calls on the same groups of texts; check they agree."""
    for g in groups[:warmup]:
        client.call(g)
        local_call(model, g)
    server, local = [], []
    for i, g in enumerate(groups[warmup:]):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                dt, preds, _ = client.call(g)
                server.append(dt)
            else:
                dt, out = local_call(model, g)
                local.append(dt)
        if [p["label"] for p in preds] != out["label"].tolist():
            sys.exit(f"server and in-process labels differ on call {i}")
    n = len(groups[0])

    def figures(times: list[float]) -> dict:
        per_s = len(times) / sum(times)
        return {"p50_ms": 1000 * statistics.median(times), "p99_ms": 1000 * pct(times, 99),
                "calls_per_s": per_s, "texts_per_s": per_s * n, "calls": len(times)}

    return {"texts_per_call": n, "server": figures(server), "in_process": figures(local)}


def report(name: str, r: dict) -> None:
    s, l = r["server"], r["in_process"]
    print(f"\n{name}: {r['texts_per_call']} text(s) per call, {s['calls']} timed calls per side")
    print(f"| side | p50 ms | p99 ms | calls/s | texts/s |\n| --- | ---: | ---: | ---: | ---: |")
    for label, f in (("server (HTTP)", s), ("in-process pyfunc.predict", l)):
        print(f"| {label} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['calls_per_s']:,.0f} | {f['texts_per_s']:,.0f} |")
    print(f"server / in-process: p50 x{s['p50_ms'] / l['p50_ms']:.2f}, p99 x{s['p99_ms'] / l['p99_ms']:.2f}, "
          f"throughput x{s['texts_per_s'] / l['texts_per_s']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-uri", help="model to serve (default: train the demo model in a temporary workspace)")
    ap.add_argument("--tracking-uri", help="tracking store of --model-uri (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    ap.add_argument("--single", type=int, default=1000, help="timed single-text calls per side")
    ap.add_argument("--batched", type=int, default=300, help="timed batched calls per side")
    ap.add_argument("--batch-size", type=int, default=32, help="texts per batched call")
    ap.add_argument("--warmup", type=int, default=30, help="untimed calls per side before each measurement")
    ap.add_argument("--out", type=Path, help="also write the figures here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace (its path is printed)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a killed run still stops its server

    tmp = None
    if args.model_uri:
        model_uri = args.model_uri
        tracking = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        cwd = REPO
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bigmodel-bench-serving-"))
        print(f"training the demo model in {tmp / 'main'} (params.yaml as in the repo) ...", flush=True)
        t0 = time.perf_counter()
        model_uri, tracking = train_demo(tmp / "main")
        print(f"trained and registered in {time.perf_counter() - t0:.0f}s", flush=True)
        cwd = tmp / "main"
    proc = None
    try:
        import mlflow

        from bigmodel_core.data.demo import generate

        proc, port, log = start_server(model_uri, tracking, cwd)
        served_line = next((l for l in log.read_text().splitlines() if l.startswith("serving ")), "")
        print(served_line.split(";")[0], flush=True)
        client = Client(port)
        _, _, headers = client.call(["warm up"])
        pinned = headers.get("x-model") or headers.get("X-Model")
        mlflow.set_tracking_uri(tracking)
        model = mlflow.pyfunc.load_model(pinned)
        refusal = getattr(model.unwrap_python_model(), "refusal", lambda texts: None)
        # the generator's texts that the model scores (it refuses what its training set aside: empty, control, ...)
        texts = [t for t in generate(6000, 11)["text"] if isinstance(t, str) and t.strip() and refusal([t]) is None]
        need_single = args.single + args.warmup
        need_batched = (args.batched + args.warmup) * args.batch_size
        while len(texts) < max(need_single, need_batched):
            texts = texts + texts
        single = measure(client, model, [[t] for t in texts[:need_single]], args.warmup)
        b = args.batch_size
        batched = measure(client, model, [texts[i * b:(i + 1) * b] for i in range(args.batched + args.warmup)],
                          args.warmup)
    finally:
        if proc is not None:
            stop(proc)
        if tmp is not None:
            if args.keep:
                print(f"kept workspace {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    import torch

    print(f"\nmodel {pinned}; {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d')}")
    report("single", single)
    report("batched", batched)
    p99 = single["server"]["p99_ms"]
    ratio = batched["server"]["texts_per_s"] / batched["in_process"]["texts_per_s"]
    print(f"\ntarget single-request p99 <= 20 ms: {p99:.2f} ms, {'met' if p99 <= 20 else 'NOT met'}")
    print(f"target batched server throughput >= 0.5 x in-process: x{ratio:.2f}, {'met' if ratio >= 0.5 else 'NOT met'}")
    if args.out:
        args.out.write_text(json.dumps({"model": pinned, "single": single, "batched": batched}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
