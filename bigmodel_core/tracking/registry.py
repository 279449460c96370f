"""Moving the champion alias safely, and the promotion ledger.

* Compare-and-set: the alias moves only if it still points at the version the gate compared against
  (read and written under a lock), so two runs racing cannot both promote.
* The ledger is append-only: one registered-model tag per decision, keyed by time and a random suffix
  (`bigmodel.ledger.<ns>.<hex>`, so two writers never overwrite each other), each a small JSON record
  (from, to, when, why, who, metrics). `bigmodel registry history` prints it.

The lock sits beside the SQLite store when there is one (every workspace sharing that database shares
the lock), else in the workspace; a remote tracking server gets the compare-and-set check alone.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import time
import uuid
from pathlib import Path

from filelock import FileLock

LEDGER_PREFIX = "bigmodel.ledger."


def _lock_path(root: Path, client=None) -> Path:
    import mlflow

    uri = str(getattr(client, "tracking_uri", None) or mlflow.get_tracking_uri())
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
        return db.with_name(db.name + ".bigmodel-lock")
    return root / ".bigmodel" / "registry.lock"


@contextlib.contextmanager
def registry_lock(root: Path, client=None):
    """One writer of aliases and ledger at a time (a file lock beside the SQLite store, or in the workspace)."""
    path = _lock_path(root, client)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):  # a flock: the kernel drops it if the holder dies
        yield


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def ledger(client, name: str) -> list[dict]:
    """Every recorded decision, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return []
    rows = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(LEDGER_PREFIX)]
    return [{**r, "seq": i} for i, r in enumerate(rows, 1)]


def append_ledger(client, name: str, entry: dict) -> dict:
    """Add one record: a key of its own (time, then random), never an overwrite of another writer's."""
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    key = f"{LEDGER_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
    client.set_registered_model_tag(name, key, json.dumps(record, sort_keys=True))
    return record


def champion_seen(decision: dict) -> str | None:
    """The champion version an evaluation saw (reports/evaluate/decision.json): the one it compared with, or one
    with another label set (not comparable); None when the model had no champion."""
    champ = decision.get("champion")
    if champ:
        return str(champ["version"])
    other = next((c for c in decision.get("checks", []) if c.get("rule") == "same_labels_as_champion"), None)
    return str(other["champion_version"]) if other else None


def champion_stack(rows: list[dict]) -> list[str]:
    """The champions in the order they took over, as promotions push and rollbacks pop them."""
    stack: list[str] = []
    for r in rows:
        if r["action"] == "promote":
            stack.append(r["to"])
        elif r["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != r["to"]:
                stack.append(r["to"])
    return stack


def move_champion(
    client,
    root: Path,
    name: str,
    alias: str,
    to_version: str,
    expected: str | None,
    *,
    why: str,
    who: str,
    metrics: dict | None = None,
    action: str = "promote",
) -> tuple[bool, str]:
    """Point `alias` at `to_version` if it still points at `expected` (None: no champion yet).

    Returns (moved, message); a ledger record is written either way (not when it points there already).
    """
    with registry_lock(root, client):
        current = alias_version(client, name, alias)
        if current == to_version:
            return True, f"{alias} is v{to_version} already: nothing moved"
        if current != expected:
            msg = (
                f"{alias} is v{current} now, not v{expected} as when this decision was taken: "
                f"left alone (another run or a person moved it)"
            )
            append_ledger(
                client,
                name,
                {
                    "action": "refused",
                    "from": current,
                    "to": to_version,
                    "why": why + "; " + msg,
                    "who": who,
                    "metrics": metrics or {},
                },
            )
            return False, msg
        client.set_registered_model_alias(name, alias, to_version)
        append_ledger(
            client,
            name,
            {"action": action, "from": current, "to": to_version, "why": why, "who": who, "metrics": metrics or {}},
        )
        return True, f"{alias}: v{current} -> v{to_version}" if current else f"{alias}: v{to_version} (first)"


def user() -> str:
    try:
        return "user:" + getpass.getuser()
    except Exception:  # no login name (some containers)
        return "user:unknown"


# --------------------------------------------------------------------------- by hand: promote, rollback
def write_champion_ref(client, root: Path, name: str, alias: str) -> Path:
    """Write registry/champion.json: which version the champion alias names now (model, alias, version, run).

    validate and evaluate read the champion from the registry, which DVC cannot see; they declare this folder
    as a dependency instead, so a champion moved by hand (promote, rollback) makes `dvc status` show them
    changed and `dvc repro` compare again. The deploy stage does not write it: the champion it sets is the model
    evaluate has just compared, and re-running evaluate against that same model would tell nothing new."""
    from bigmodel_core.io import write_json
    from bigmodel_core.stages.spec import CHAMPION_REF_FILE, LOCATIONS

    version = alias_version(client, name, alias)
    run_id = client.get_model_version(name, version).run_id if version is not None else None
    target = Path(root) / LOCATIONS["champion_ref"] / CHAMPION_REF_FILE
    write_json({"model_name": name, "alias": alias, "version": version, "run_id": run_id}, target)
    return target


SMOKE_TEXTS = ["a short smoke test text", "another line to classify, with punctuation!"]


def smoke_test(uri: str, tracking: str, model_uri: str) -> None:
    """Load `model_uri` in a fresh Python process and classify two texts; raise if anything is off."""
    import os
    import subprocess
    import sys

    from bigmodel_core.errors import BigmodelError

    script = (
        "import sys, mlflow, pandas as pd\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "out = mlflow.pyfunc.load_model(sys.argv[2]).predict(pd.DataFrame({'text': sys.argv[3:]}))\n"
        "probs = out[[c for c in out.columns if c.startswith('prob_')]].to_numpy()\n"
        "assert len(out) == len(sys.argv[3:]) and out['label'].notna().all(), out\n"
        "assert abs(probs.sum(1) - 1).max() < 1e-4, probs\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, tracking, model_uri, *SMOKE_TEXTS],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BigmodelError(f"{model_uri}: smoke test failed in a fresh process, {uri} was not moved: {tail}")


def promote_by_hand(params, root: Path, version: str, reason: str) -> str:
    """`bigmodel promote VERSION --reason`: smoke-test the version, then move the champion to it."""
    from bigmodel_core.errors import BigmodelError
    from bigmodel_core.tracking.store import _setup, tracking_uri

    mlflow = _setup(params, root)
    client = mlflow.MlflowClient()
    name, alias = params.deploy.model_name, params.deploy.champion_alias
    _check_version(client, name, version)
    current = alias_version(client, name, alias)
    if current == version:
        raise BigmodelError(f"{name} v{version} is already {alias}: nothing to do")
    smoke_test(alias, tracking_uri(params, root), f"models:/{name}/{version}")
    moved, msg = move_champion(client, root, name, alias, version, current, why=reason, who=user())
    write_champion_ref(client, root, name, alias)
    if not moved:
        raise BigmodelError(msg)
    return msg


def rollback(params, root: Path, reason: str) -> str:
    """`bigmodel rollback`: back to the champion before the current one, as the ledger tells."""
    from bigmodel_core.errors import BigmodelError
    from bigmodel_core.tracking.store import _setup, tracking_uri

    mlflow = _setup(params, root)
    client = mlflow.MlflowClient()
    name, alias = params.deploy.model_name, params.deploy.champion_alias
    current = alias_version(client, name, alias)
    if current is None:
        raise BigmodelError(f"{name} has no {alias}: nothing to roll back")
    stack = champion_stack(ledger(client, name))
    if stack and stack[-1] != current:
        raise BigmodelError(
            f"{name} v{current} became {alias} outside bigmodel (the ledger ends at v{stack[-1]}): "
            "choose the version yourself with `bigmodel promote VERSION --reason ...` (nothing changed)"
        )
    if len(stack) < 2:
        raise BigmodelError(
            f"{name} v{current} is the first {alias} on record: there is no earlier version to roll "
            "back to (nothing changed)"
        )
    previous = stack[-2]
    smoke_test(alias, tracking_uri(params, root), f"models:/{name}/{previous}")
    moved, msg = move_champion(
        client, root, name, alias, previous, current, why=f"rollback: {reason}", who=user(), action="rollback"
    )
    write_champion_ref(client, root, name, alias)
    if not moved:
        raise BigmodelError(msg)
    return msg


def _check_version(client, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    from bigmodel_core.errors import BigmodelError

    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise BigmodelError(
            f"{name} has no version {version!r} (see `bigmodel registry history` or the MLflow UI)"
        ) from None


def history_lines(params, root: Path) -> list[str]:
    from bigmodel_core.tracking.store import _setup

    client = _setup(params, root).MlflowClient()
    name = params.deploy.model_name
    rows = ledger(client, name)
    if not rows:
        return [f"{name}: no promotion decisions recorded yet"]
    current = alias_version(client, name, params.deploy.champion_alias)
    out = [f"{name}: {params.deploy.champion_alias} is v{current}" if current else f"{name}: no champion"]
    for r in rows:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted((r.get("metrics") or {}).items()))
        was = f"v{r['from']}" if r["from"] else "none"
        move = {
            "promote": f"{was} -> v{r['to']}",
            "kept": f"{was} stays (v{r['to']} not promoted)",
            "refused": f"v{r['to']} refused ({was} now)",
        }.get(r["action"], f"{was} -> v{r['to']}")
        out.append(
            f"{r['seq']:>4}  {r['at']}  {r['action']:<8} {move}  by {r['who']}: {r['why']}"
            + (f"  [{figures}]" if figures else "")
        )
    return out


# --------------------------------------------------------------------------- reproduction records
#: model version tags written by deploy.git_commit and read by `bigmodel verify-repro`
REPRO_COMMIT, REPRO_TAG, REPRO_REMOTE = "bigmodel.repro.commit", "bigmodel.repro.tag", "bigmodel.repro.dvc_remote"


def record_reproduction(params, root: Path, name: str, version: str, run_id: str | None, tags: dict[str, str]) -> None:
    """Put the commit, tag and DVC remote that reproduce `name` v`version` on the version and on its run."""
    from bigmodel_core.tracking.store import _setup

    client = _setup(params, root).MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if run_id:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)


def version_record(params, root: Path, name: str, version: str) -> dict:
    """A registered version as verify-repro needs it: its tags, its run's id and metrics (test_<key>, data_rows_*)."""
    from mlflow.exceptions import MlflowException

    from bigmodel_core.errors import ConfigError
    from bigmodel_core.tracking.store import _setup, tracking_uri

    client = _setup(params, root).MlflowClient()
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise ConfigError(
            f"{name} has no version {version!r} in {tracking_uri(params, root).split('?')[0]} "
            "(see `bigmodel registry history` or the MLflow UI)"
        ) from None
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return {
        "name": name,
        "version": str(mv.version),
        "tags": dict(mv.tags or {}),
        "run_id": mv.run_id,
        "metrics": dict(metrics),
    }
