"""How long a run with nothing to do takes (target: <= 10 s on the 2-core machine).

Builds a temporary workspace (the repo's dvc.yaml and code, the demo data shrunk unless --full), runs the
pipeline once, then times, alternating, with nothing stale:

  bigmodel run                      no Prefect server up: one `dvc status`, no server started
  bigmodel run (server up)          a workspace Prefect server is up (as under `make ui`): a recorded flow run
  flow, temporary server            the flow with a temporary Prefect server (what every run paid before)
  dvc repro        (baseline)       DVC's own no-op check of the same workspace

    .venv/bin/python benchmarks/noop_run.py [--repeats 3] [--full]
"""

from __future__ import annotations

import argparse
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
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(ws: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(PATH=str(BIN) + os.pathsep + env.get("PATH", ""), PREFECT_HOME=str(ws / ".prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1")
    return env


def _workspace(root: Path, full: bool) -> Path:
    ws = root / "ws"
    ws.mkdir()
    shutil.copy(REPO / "dvc.yaml", ws)
    shutil.copytree(REPO / "bigmodel_core", ws / "bigmodel_core", ignore=shutil.ignore_patterns("__pycache__"))
    (ws / "data/sources").mkdir(parents=True)
    (ws / "data/sources/README.md").write_text("sources\n")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if not full:
        raw["data"]["sources"][0]["rows"] = 800
        raw["tokenizer"].update(vocab_size=600, max_length=32)
        raw["model"].update(d_model=32, n_layers=1, n_heads=2, d_ff=64)
        raw["train"].update(epochs=1)
        raw["evaluate"].update(min_accuracy=0.3, min_macro_f1=0.3)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=ws, env=_env(ws), check=True)
    return ws


def _timed(cmd: list[str], ws: Path, env: dict, expect: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or expect not in proc.stdout + proc.stderr:
        raise SystemExit(f"{' '.join(cmd)} did not end as a no-op (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def _start_server(ws: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**_env(ws), "PREFECT_API_URL": url, "PREFECT_UI_API_URL": url}
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        raise SystemExit("the Prefect server did not start in 180 s")
    (ws / ".prefect").mkdir(exist_ok=True)
    (ws / ".prefect/ui-server.json").write_text(json.dumps({"api_url": url, "pid": proc.pid}))  # as `make ui` does
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="the repo's params.yaml as it is (a longer first run)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bigmodel-noop-"))
    try:
        ws = _workspace(tmp, args.full)
        env = _env(ws)
        t0 = time.perf_counter()
        first = subprocess.run([str(BIN / "bigmodel"), "run"], cwd=ws, env=env, capture_output=True, text=True)
        if first.returncode != 0:
            raise SystemExit(f"the first run failed:\n{first.stdout[-3000:]}{first.stderr[-3000:]}")
        print(f"first run (every stage): {time.perf_counter() - t0:.1f}s", flush=True)
        times: dict[str, list[float]] = {"bigmodel run": [], "bigmodel run (server up)": [],
                                         "flow, temporary server": [], "dvc repro (baseline)": []}
        server, _ = _start_server(ws)
        try:
            for _ in range(args.repeats):
                times["bigmodel run (server up)"].append(_timed([str(BIN / "bigmodel"), "run"], ws, env, "nothing to do"))
                times["dvc repro (baseline)"].append(_timed([str(BIN / "dvc"), "repro"], ws, env, "up to date"))
                os.rename(ws / ".prefect/ui-server.json", ws / ".prefect/ui-server.off")  # as if no server were up
                try:
                    times["bigmodel run"].append(_timed([str(BIN / "bigmodel"), "run"], ws, env, "nothing to do"))
                    times["flow, temporary server"].append(
                        _timed([sys.executable, "-m", "bigmodel_flows.retrain"], ws, {**env, "PYTHONPATH": str(REPO)}, '"noop": true'))
                finally:
                    os.rename(ws / ".prefect/ui-server.off", ws / ".prefect/ui-server.json")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        base = statistics.median(times["dvc repro (baseline)"])
        print(f"\nno-op run, {args.repeats} alternating repeats, median (min-max) seconds; ratio to dvc repro's no-op:")
        for name, xs in times.items():
            m = statistics.median(xs)
            print(f"  {name:<26} {m:6.1f}s  ({min(xs):.1f}-{max(xs):.1f})  x{m / base:.2f}")
        worst = max(statistics.median(times["bigmodel run"]), statistics.median(times["bigmodel run (server up)"]))
        print(f"target <= 10 s for `bigmodel run` with nothing stale: {'met' if worst <= 10 else 'NOT met'} ({worst:.1f}s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
