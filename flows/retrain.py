"""The retraining flow: every stage of dvc.yaml, in dependency order, each run through DVC.

    bigmodel run                  # what `make run` calls
    python -m flows.retrain       # the same flow without the CLI's summary
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow

from bigmodel_core.config import load_params
from bigmodel_core.dag import load_dag
from tasks.dvc_stage import StageFailed, run_stage

__all__ = ["retrain", "print_summary", "StageFailed"]


@flow(name="retrain")
def retrain(root: str = ".", force: bool = False) -> dict:
    rootp = Path(root).resolve()
    params = load_params(rootp / "params.yaml")
    stage_task = run_stage.with_options(retries=params.flow.retries, retry_delay_seconds=params.flow.retry_delay_seconds)
    started = time.perf_counter()
    stages = load_dag(rootp / "dvc.yaml")
    results = []
    for i, stage in enumerate(stages, start=1):
        print(f"[{i}/{len(stages)}] {stage.name} ...", flush=True)
        res = stage_task(stage.name, str(rootp), force)
        print(f"[{i}/{len(stages)}] {stage.name}: {'ran' if res['ran'] else 'up to date, skipped'} ({res['seconds']:.1f}s)", flush=True)
        results.append(res)
    return {"stages": results, "seconds": round(time.perf_counter() - started, 2)}


def print_summary(result: dict, root: Path, wall_seconds: float) -> None:
    """What happened, per stage, and where to look next."""
    out = []
    out.append("")
    out.append("== bigmodel retrain ==")
    for s in result["stages"]:
        out.append(f"  {s['stage']:<9} {'ran    ' if s['ran'] else 'skipped'} {s['seconds']:7.1f}s")
    ran = [s["stage"] for s in result["stages"] if s["ran"]]
    eval_path, deploy_path = root / "metrics/eval.json", root / "reports/deploy.json"
    if eval_path.exists():
        ev = json.loads(eval_path.read_text())
        vs = (f" (champion v{ev['champion_version']}: macro-F1 {ev['champion_macro_f1']:.4f})"
              if ev.get("champion_version") is not None else "")
        out.append(f"  test: accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f} on {ev['n_test']} rows{vs}")
        from bigmodel_core.evaluation.runtime import cost_line

        if cost_line(ev):
            out.append("  " + cost_line(ev))
    if deploy_path.exists() and "deploy" in ran:
        d = json.loads(deploy_path.read_text())
        verdict = (f"promoted ({d['note']})" if d["promoted"] and d.get("note")
                   else "promoted" if d["promoted"] else "NOT promoted: " + (d.get("note") or "; ".join(d.get("reasons", []))))
        out.append(f"  registered {d['model_name']} version {d['version']} with alias(es) {', '.join(d['aliases'])}: {verdict}")
        out.append(f"  MLflow run {d['run_id']}")
    elif not ran:
        out.append("  nothing to do: every stage is up to date (no new model version)")
    out.append(f"  flow time: {result['seconds']:.1f}s (command total {wall_seconds:.1f}s)")
    out.append("  look further: make ui  |  dvc metrics show  |  dvc plots show  |  dvc status")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    print(json.dumps(retrain(), indent=2))
