"""`bigmodel verify-repro NAME VERSION`: re-derive a registered version from its commit and DVC remote.

    bigmodel verify-repro bigmodel-demo 3            # exit 0: the metrics match; 1: they do not (or data is gone)
    bigmodel verify-repro bigmodel-demo 3 --keep     # keep the temporary worktree to look into

Reads the commit, tag and DVC remote that deploy.git_commit recorded on the version (tags bigmodel.repro.*),
checks the commit out in a temporary git worktree (a hidden folder beside the workspace, so that relative source
paths leading out of it still resolve) with a DVC cache of its own, pulls the data from the remote
(DVC refuses objects whose content no longer matches their hash), runs `dvc repro --force evaluate` (every stage
but deploy: nothing is registered; MLflow writes go to a throwaway database), and compares the test metrics with
the ones registered. A model trained on CPU is reproduced on CPU and compared exactly (training is seeded and
bpe tokenizers train deterministically); otherwise within --tolerance. The workspace is not touched.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.errors import BigmodelError, ConfigError
from bigmodel_core.release.record import git, resolve_url

#: eval.json keys that depend on the model and data alone (not timings, sizes or the registry's state)
COMPARED = (
    "accuracy",
    "macro_f1",
    "n_test",
    "roc_auc",
    "pr_auc",
    "ece",
    "parameters",
    "baseline_accuracy",
    "baseline_macro_f1",
)
DATA_COUNTS = ("rows_in", "rows_out", "rows_quarantined")
#: the tolerance when the model was not trained on CPU (GPU kernels are not bit-reproducible)
DEFAULT_GPU_TOLERANCE = 0.01


class NotReproduced(BigmodelError):
    """The re-derived version differs from the registered one (names the metric and both values)."""

    exit_code = 1


@dataclass
class Verdict:
    name: str
    version: str
    commit: str
    tag: str
    exact: bool
    tolerance: float
    rows: list[tuple[str, float, float, bool]] = field(default_factory=list)  # metric, registered, reproduced, ok
    changed_outputs: list[str] = field(default_factory=list)
    worktree: str | None = None

    @property
    def mismatches(self) -> list[tuple[str, float, float, bool]]:
        return [r for r in self.rows if not r[3]]


def _same(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if tolerance == 0 else abs(a - b) <= tolerance


def compare(registered: dict[str, float], reproduced: dict[str, float], tolerance: float) -> list[tuple]:
    """(metric, registered, reproduced, ok) for every metric the registered run has; one the reproduction lacks
    counts as a mismatch (reproduced: nan)."""
    rows = []
    for key in sorted(registered):
        mine = reproduced.get(key, float("nan"))
        rows.append(
            (key, float(registered[key]), float(mine), key in reproduced and _same(registered[key], mine, tolerance))
        )
    return rows


def registered_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The run's metrics that a reproduction must match (test figures, per-class F1, data counts)."""
    keep = {f"test_{k}" for k in COMPARED} | {f"data_{k}" for k in DATA_COUNTS}
    return {k: v for k, v in metrics.items() if k in keep or k.startswith("test_f1_")}


def reproduced_metrics(worktree: Path) -> dict[str, float]:
    """The same figures read from a reproduction's metrics/eval.json, per_class.json and data_quality.json."""
    ev = json.loads((worktree / "metrics/eval.json").read_text())
    out = {f"test_{k}": float(ev[k]) for k in COMPARED if isinstance(ev.get(k), (int, float))}
    per_class = worktree / "reports/evaluate/per_class.json"
    if per_class.exists():
        out.update(
            {f"test_f1_{lab}": float(m["f1"]) for lab, m in json.loads(per_class.read_text())["per_class"].items()}
        )
    quality = json.loads((worktree / "metrics/data_quality.json").read_text())
    out.update({f"data_{k}": float(quality[k]) for k in DATA_COUNTS if k in quality})
    return out


def data_and_model_outputs() -> list[str]:
    """The cached outputs a CPU reproduction re-creates byte for byte: data and model, not metrics, plots or
    evaluate's reports (they hold timings)."""
    from bigmodel_core.stages import STAGES, get

    return [
        o.path
        for name in STAGES
        for o in get(name).SPEC.outs
        if o.kind == "outs" and o.cache and o.name != "evaluation"
    ]


def _changed_outputs(worktree: Path, before: str) -> list[str]:
    """Data and model outputs whose hash in the re-derived dvc.lock differs from the recorded one."""
    import yaml

    def outs(text: str) -> dict[str, str]:
        doc = yaml.safe_load(text) or {}
        found = {}
        for stage in (doc.get("stages") or {}).values():
            for o in stage.get("outs") or []:
                found[o["path"]] = o.get("md5") or o.get("hash") or ""
        return found

    old, new = outs(before), outs((worktree / "dvc.lock").read_text())
    watched = data_and_model_outputs()
    return [p for p in old if p in watched and p in new and old[p] != new[p]]


def verify(
    root: Path,
    params: Params,
    name: str,
    version: str,
    tolerance: float | None = None,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> Verdict:
    """Re-derive `name` v`version` and compare; raises NotReproduced (exit 1) on a difference or missing data,
    ConfigError (exit 2) when the version carries no record or its commit is not in this repository."""
    from bigmodel_core.tracking.registry import REPRO_COMMIT, REPRO_REMOTE, REPRO_TAG, version_record

    root = Path(root).resolve()
    record = version_record(params, root, name, version)
    tags = record["tags"]
    commit = tags.get(REPRO_COMMIT)
    if not commit:
        raise ConfigError(
            f"{name} v{version} has no reproduction record (tag {REPRO_COMMIT}): it was registered "
            "without deploy.git_commit, so no commit holds the dvc.lock that made it. Set "
            "deploy.git_commit: true for the versions to come"
        )
    if git(root, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode != 0:
        raise ConfigError(
            f"{name} v{version} was recorded at commit {commit[:12]} (tag {tags.get(REPRO_TAG)}), which "
            f"is not in the git repository at {root}: fetch it (git fetch --tags)"
        )
    registered = registered_metrics(record["metrics"])
    if not registered:
        raise ConfigError(f"{name} v{version}: its MLflow run {record['run_id']} has no test metrics to compare with")

    scratch = Path(tempfile.mkdtemp(prefix="bigmodel-verify-"))
    worktree = _worktree_place(root, say)
    verdict = Verdict(name, str(version), commit, tags.get(REPRO_TAG, ""), exact=False, tolerance=0.0)
    say(f"verify-repro: {name} v{version} from commit {commit[:12]} ({tags.get(REPRO_TAG) or 'no tag'}) in {worktree}")
    try:
        git(root, "worktree", "add", "--detach", "-q", str(worktree), commit)
        recorded_lock = (worktree / "dvc.lock").read_text() if (worktree / "dvc.lock").exists() else ""
        train = worktree / "metrics/train.json"
        device = json.loads(train.read_text()).get("device", "unknown") if train.exists() else "unknown"
        verdict.exact = tolerance is None and device == "cpu"
        verdict.tolerance = tolerance if tolerance is not None else (0.0 if verdict.exact else DEFAULT_GPU_TOLERANCE)
        _pull(worktree, scratch, tags.get(REPRO_REMOTE) or _default_remote(root), say)
        _reproduce(worktree, scratch, on_cpu=device == "cpu", say=say)
        verdict.rows = compare(registered, reproduced_metrics(worktree), verdict.tolerance)
        verdict.changed_outputs = _changed_outputs(worktree, recorded_lock) if recorded_lock else []
    finally:
        if keep:
            verdict.worktree = str(worktree)
            say(
                f"verify-repro: kept {worktree} and {scratch} (remove them with `git worktree remove --force "
                f"{worktree}` and `rm -r {scratch}`)"
            )
        else:
            git(root, "worktree", "remove", "--force", str(worktree), check=False)
            shutil.rmtree(worktree, ignore_errors=True)
            if worktree.parent.name.startswith("bigmodel-verify-worktree-"):
                shutil.rmtree(worktree.parent, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            git(root, "worktree", "prune", check=False)
    return verdict


def _worktree_place(root: Path, say: Callable[[str], None]) -> Path:
    """Where the commit is checked out: beside the workspace (a hidden folder in its parent), at the same depth, so
    that a source path leading out of the repository (../corpus/x.csv) names the same file there as here; in the
    system's temporary folder when the parent is not writable."""
    import secrets

    if os.access(root.parent, os.W_OK):
        return root.parent / f".bigmodel-verify-{root.name}-{secrets.token_hex(4)}"  # git worktree add creates it
    say(
        f"verify-repro: warning: {root.parent} is not writable: the worktree goes to the temporary folder, where "
        "source paths leading out of the repository (../...) do not name the same files"
    )
    return Path(tempfile.mkdtemp(prefix="bigmodel-verify-worktree-")) / root.name


def _default_remote(root: Path) -> str:
    from bigmodel_core.release.record import dvc

    default = dvc(root, "remote", "default", check=False).stdout.strip()
    if not default:
        raise ConfigError("the version names no DVC remote and this repository has no default one (dvc remote list)")
    for line in dvc(root, "remote", "list").stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == default:
            return resolve_url(root, parts[1].strip())
    raise ConfigError(f"DVC remote {default!r} is not configured here")


def _pull(worktree: Path, scratch: Path, url: str, say: Callable[[str], None]) -> None:
    """Everything the commit's dvc.lock and .dvc files name, from the remote into a cache of the worktree's own."""
    from bigmodel_core.release.record import dvc

    dvc(worktree, "remote", "add", "--local", "--default", "--force", "recorded", url)
    dvc(worktree, "config", "--local", "cache.dir", str(scratch / "cache"))
    say(f"verify-repro: dvc pull from {url}")
    proc = dvc(worktree, "pull", check=False)
    if proc.returncode != 0:
        hashes = re.findall(r"md5: ([0-9a-f]{32})", proc.stderr)
        failed = []
        if "Checkout failed for following targets:" in proc.stderr:
            for line in proc.stderr.split("Checkout failed for following targets:", 1)[1].splitlines():
                if line.startswith("Is your cache"):
                    break
                failed += [line.strip()] if line.strip() else []
        what = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "") or "some data"
        if not hashes and not failed:  # not DVC's "missing cache files": say what DVC said
            from bigmodel_core.release.record import _last_line

            raise NotReproduced(f"`dvc pull` from {url} failed: {_last_line(proc)}")
        raise NotReproduced(
            f"the DVC remote {url} has no intact copy of {what}"
            + (f" (object{'s' if len(hashes) > 1 else ''} {', '.join(h[:12] for h in hashes[:3])})" if hashes else "")
            + ": missing, or changed since it was pushed (its content no longer matches the hash the commit records); "
            "the version cannot be re-derived from the data it was trained on"
        )
    pulled = [line for line in proc.stdout.splitlines() if line.strip()]
    say(f"verify-repro: {pulled[-1] if pulled else 'pulled'}")


def _reproduce(worktree: Path, scratch: Path, on_cpu: bool, say: Callable[[str], None]) -> None:
    """`dvc repro --force evaluate` in the worktree: its own code (a clone of bigmodel), its own MLflow database."""
    from bigmodel_core.pipeline.workspace import child_env

    env = child_env(
        {
            "DVC_NO_ANALYTICS": "1",
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}",  # nothing reaches the real registry
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("BIGMODEL_WORKSPACE_LOCK", None)
    if (worktree / "bigmodel_core" / "stages").is_dir():  # a clone of bigmodel: run the code of that commit
        env["PYTHONPATH"] = str(worktree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    else:
        _warn_version(worktree, say)
    if on_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # trained on CPU: re-derive on CPU, so the figures can match exactly
    say("verify-repro: dvc repro --force evaluate (every stage but deploy)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--force", "evaluate"],
        cwd=worktree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith(("Running stage", "epoch ", "stage ")):
            say("  " + line.rstrip("\n")[:160])
    if proc.wait() != 0:  # the stage's own `error:` line says more than DVC's "failed to reproduce"
        errors = [line for line in lines if line.startswith("error:")] or [
            line for line in lines if line.startswith("ERROR")
        ]
        raise NotReproduced(
            f"the reproduction failed: {(errors or lines or ['no output'])[-1]} (dvc repro exited "
            f"{proc.returncode} in {worktree}; --keep keeps it)"
        )


def _warn_version(worktree: Path, say: Callable[[str], None]) -> None:
    from bigmodel_core.pipeline.workspace_init import version_text
    from bigmodel_core.stages.spec import VERSION_FILE

    path = worktree / VERSION_FILE
    if path.exists() and path.read_text() != version_text():
        say(
            f"verify-repro: warning: the version was made with {path.read_text().strip()}, this is "
            f"{version_text().strip()}: the code differs, so may the figures"
        )


def report(verdict: Verdict) -> list[str]:
    """The comparison as lines for the terminal."""
    how = "exactly" if verdict.tolerance == 0 else f"within {verdict.tolerance:g}"
    lines = [f"{'metric':<28} {'registered':>12} {'reproduced':>12}"]
    for key, a, b, ok in verdict.rows:
        lines.append(f"{key:<28} {a:>12.6g} {b:>12.6g}  {'ok' if ok else 'DIFFERS'}")
    if verdict.changed_outputs:
        lines.append("data or model differing from the recorded dvc.lock: " + ", ".join(verdict.changed_outputs))
    elif verdict.rows:
        lines.append("data and model byte for byte as recorded in dvc.lock: " + ", ".join(data_and_model_outputs()))
    lines.append(f"compared {how}" + (" (trained on CPU, re-derived on CPU)" if verdict.exact else ""))
    return lines


def check(verdict: Verdict) -> str:
    """The closing line when every metric matches; raises NotReproduced naming the first that does not."""
    bad = verdict.mismatches
    if bad:
        key, a, b, _ = bad[0]
        more = f" (and {len(bad) - 1} more metric{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        where = f"; outputs that differ: {', '.join(verdict.changed_outputs)}" if verdict.changed_outputs else ""
        raise NotReproduced(
            f"{verdict.name} v{verdict.version} was not reproduced from commit {verdict.commit[:12]}: "
            f"{key} registered {a:.6g}, reproduced {b:.6g}{more}{where}"
        )
    how = "exactly" if verdict.tolerance == 0 else f"within {verdict.tolerance:g}"
    return (
        f"reproduced: {verdict.name} v{verdict.version} from commit {verdict.commit[:12]} ({verdict.tag}): "
        f"{len(verdict.rows)} metrics match {how}"
    )
