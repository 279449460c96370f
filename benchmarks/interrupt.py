"""How fast, and how cleanly, an interrupted training run stops (target: exit 130/143 within a few seconds,
one `error:` line, no process left).

Builds a temporary workspace (the repo's dvc.yaml and code, the demo data shrunk), runs the pipeline once,
then sets a long training and, alternating, starts each command, waits for its second epoch and sends the
signal, timing signal -> exit:

  bigmodel run, Ctrl-C      SIGINT to the command's whole process group (what a terminal does)
  bigmodel run, SIGTERM     SIGTERM to `bigmodel run` alone (what a scheduler or `kill` does)
  dvc repro, Ctrl-C         (baseline) DVC's own handling of the same Ctrl-C at the same point

For each it prints the median seconds, the exit code, the lines on stderr, whether a traceback was printed
and how many of the command's processes were still alive 5 s after it exited.

    .venv/bin/python benchmarks/interrupt.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from noop_run import BIN, _env, _workspace  # the same tiny workspace as the no-op benchmark


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _once(cmd: list[str], ws: Path, signum: int, whole_group: bool) -> dict:
    proc = subprocess.Popen(cmd, cwd=ws, env=_env(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().startswith("epoch 2:"):
            break
    else:
        raise SystemExit(f"{' '.join(cmd)} never reached epoch 2: {proc.stderr.read()[-2000:]}")
    children = _descendants(proc.pid)
    sent = time.perf_counter()
    (os.killpg if whole_group else os.kill)(proc.pid, signum)
    _, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - sent
    time.sleep(5)
    left = [p for p in children if _running(p)]
    for p in left:  # leave the machine as it was
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lines = [l for l in err.splitlines() if l.strip()]
    return {"seconds": seconds, "exit": proc.returncode, "stderr_lines": len(lines),
            "traceback": "Traceback" in err, "left": len(left)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bigmodel-interrupt-") as tmp:
        ws = _workspace(Path(tmp), full=False)
        subprocess.run([str(BIN / "bigmodel"), "run"], cwd=ws, env=_env(ws), check=True, capture_output=True)
        raw = yaml.safe_load((ws / "params.yaml").read_text())
        raw["train"].update(epochs=400, patience=400)
        (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        cases = {
            "bigmodel run, Ctrl-C": ([str(BIN / "bigmodel"), "run"], signal.SIGINT, True),
            "bigmodel run, SIGTERM": ([str(BIN / "bigmodel"), "run"], signal.SIGTERM, False),
            "dvc repro, Ctrl-C (baseline)": ([str(BIN / "dvc"), "repro"], signal.SIGINT, True),
        }
        results: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (cmd, signum, group) in cases.items():
                results[name].append(_once(cmd, ws, signum, group))
        base = statistics.median(r["seconds"] for r in results["dvc repro, Ctrl-C (baseline)"])
        print(f"{'case':<30} {'median s':>8} {'vs dvc':>7} {'exit':>5} {'stderr lines':>12} {'traceback':>9} {'left':>5}")
        for name, rs in results.items():
            med = statistics.median(r["seconds"] for r in rs)
            print(f"{name:<30} {med:8.2f} {med / base:6.2f}x {rs[-1]['exit']:>5} "
                  f"{max(r['stderr_lines'] for r in rs):>12} {str(any(r['traceback'] for r in rs)):>9} "
                  f"{max(r['left'] for r in rs):>5}")


if __name__ == "__main__":
    main()
