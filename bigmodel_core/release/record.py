"""deploy.git_commit: after a retraining run that registered a version, make that version reproducible.

`bigmodel run` ends with `record()` when `deploy.git_commit` is true:

1. every input the DAG takes from git (code, data/sources, bigmodel.version) must be committed, and every
   DVC-tracked file (`dvc add`) must match its .dvc file: otherwise the commit could not reproduce the model;
2. `dvc push` sends the data and model in DVC's cache to the remote (deploy.dvc_remote; else the repository's
   default remote; with none, a local folder remote at deploy.local_remote, written to .dvc/config.local);
3. dvc.yaml, dvc.lock, params.yaml, metrics/, plots/ and bigmodel.version are committed (only these: what else
   you have staged stays staged) and the commit is tagged model/<name>/v<version>;
4. the commit, tag and remote go on the model version and its run (tags bigmodel.repro.*), which
   `bigmodel verify-repro NAME VERSION` reads.

A push that fails leaves git untouched; a commit that fails leaves the version without its record.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.errors import BigmodelError, ConfigError

#: what the record commits, when present (metrics and plots are git-tracked, `cache: false` in dvc.yaml)
COMMITTED = ("dvc.yaml", "dvc.lock", "params.yaml", "metrics", "plots")
LOCAL_REMOTE_NAME = "bigmodel-local"
#: who commits when git has no user.name/user.email configured
FALLBACK_IDENTITY = ("bigmodel", "bigmodel@localhost")


class ReleaseFailed(BigmodelError):
    """deploy.git_commit could not record the version (git or DVC said no); the version stays registered."""

    exit_code = 1


def git(root: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ConfigError("git is not installed (deploy.git_commit and verify-repro need it)") from None
    if check and proc.returncode != 0:
        raise ReleaseFailed(f"`git {' '.join(args)}` failed in {root}: {_last_line(proc)}")
    return proc


def dvc(root: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    from bigmodel_core.pipeline.workspace import child_env

    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=child_env({"DVC_NO_ANALYTICS": "1", **(env or {})}),
    )
    if check and proc.returncode != 0:
        raise ReleaseFailed(f"`dvc {' '.join(args)}` failed in {root}: {_last_line(proc)}")
    return proc


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error", "fatal"))]
    return (errors or lines or ["no output"])[-1]


def tag_name(model_name: str, version: str) -> str:
    """model/<name>/v<version>, with characters git does not allow in a ref name replaced by '-'."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.") or "model"
    return f"model/{safe}/v{version}"


def _inputs_from_git(root: Path) -> list[str]:
    """The DAG's inputs that no stage writes (code files, data/sources, bigmodel.version)."""
    from bigmodel_core.pipeline.dag import load_dag

    stages = load_dag(root / "dvc.yaml")
    outs = [o for s in stages for o in s.outs]
    deps = {d for s in stages for d in s.deps}
    return sorted(d for d in deps if not any(d == o or d.startswith(o + "/") for o in outs))


def preflight(root: Path) -> None:
    """Before a run with deploy.git_commit: a git work tree whose inputs are committed (else ConfigError,
    nothing run)."""
    root = Path(root)
    inside = git(root, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise ConfigError(
            f"deploy.git_commit is true, but {root} is not in a git repository: `git init` and commit "
            "the workspace, or set deploy.git_commit: false"
        )
    if git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
        raise ConfigError(
            f"deploy.git_commit is true, but the git repository at {root} has no commit yet: commit the "
            "workspace first (git add -A && git commit), so that a run's commit has a parent"
        )
    dirty = uncommitted_inputs(root)
    if dirty:
        raise ConfigError(_dirty_message(dirty))


def uncommitted_inputs(root: Path) -> list[str]:
    """Inputs of the DAG (from git) with changes git has not committed: modified, new or deleted files."""
    from bigmodel_core.stages.spec import VERSION_FILE

    paths = [p for p in _inputs_from_git(root) if p != VERSION_FILE]  # the record commits bigmodel.version itself
    if not paths:
        return []
    out = git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return sorted({line[3:].strip().strip('"') for line in out.stdout.splitlines() if line.strip()})


def _dirty_message(dirty: list[str]) -> str:
    more = f" and {len(dirty) - 8} more" if len(dirty) > 8 else ""
    return (
        f"deploy.git_commit: uncommitted changes to inputs of the pipeline: {', '.join(dirty[:8])}{more}. A commit "
        "of dvc.lock would not reproduce the model from them: commit them (large data: `dvc add` it and commit "
        "the .dvc file), then run again"
    )


def _changed_dvc_files(root: Path) -> list[str]:
    """`.dvc` files (dvc add) whose data in the workspace differs from what they record."""
    import json

    proc = dvc(root, "status", "--json", check=False)
    try:
        status = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except ValueError:
        return []
    return sorted(k for k in status if k.endswith(".dvc"))


def unversioned_sources(root: Path, params: Params) -> list[str]:
    """Sources that neither git nor DVC keep with the commit: outside every input the DAG declares (data/sources)."""
    inputs = [(root / p).resolve() for p in _inputs_from_git(root)]
    found = []
    for source in params.data.sources:
        if source.path.startswith("builtin:"):
            continue
        if "://" in source.path:
            found.append(f"{source.name} ({source.path})")
            continue
        where = Path(source.path.split("*", 1)[0].split("?", 1)[0] or ".")
        where = (where if where.is_absolute() else root / where).resolve()
        if not any(where == i or i in where.parents for i in inputs):
            found.append(f"{source.name} ({source.path})")
    return found


def remote(root: Path, params: Params, say: Callable[[str], None]) -> tuple[str, str]:
    """(name, url) of the DVC remote to push to; adds the local folder remote when the repository has none."""
    listed = dvc(root, "remote", "list").stdout.splitlines()
    remotes = dict(line.split(None, 1) for line in listed if len(line.split(None, 1)) == 2)
    wanted = params.deploy.dvc_remote
    if wanted:
        if wanted not in remotes:
            raise ConfigError(
                f"deploy.dvc_remote: no DVC remote named {wanted!r} in {root} (`dvc remote list` shows "
                f"{', '.join(sorted(remotes)) or 'none'}); add it with `dvc remote add {wanted} URL`"
            )
        return wanted, resolve_url(root, remotes[wanted].strip())
    default = dvc(root, "remote", "default", check=False).stdout.strip()
    if default and default in remotes:
        return default, resolve_url(root, remotes[default].strip())
    folder = Path(params.deploy.local_remote)
    folder = (folder if folder.is_absolute() else root / folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    dvc(root, "remote", "add", "--local", "--default", "--force", LOCAL_REMOTE_NAME, str(folder))
    say(
        f"release: no default DVC remote in this repository: added the local folder remote {LOCAL_REMOTE_NAME} at "
        f"{folder} (.dvc/config.local); for storage off this machine: dvc remote add -d store s3://bucket/path"
    )
    return LOCAL_REMOTE_NAME, str(folder)


def resolve_url(root: Path, url: str) -> str:
    """A remote's URL with a relative local path made absolute (DVC reads it relative to .dvc/)."""
    if "://" in url or Path(url).is_absolute():
        return url
    return str((Path(root) / ".dvc" / url).resolve())


def _output_gitignores(root: Path) -> list[str]:
    """The .gitignore files DVC writes beside the outputs it caches (data/.gitignore lists /raw, ...)."""
    from bigmodel_core.pipeline.dag import load_dag

    folders = {str(Path(o).parent) for s in load_dag(root / "dvc.yaml") for o in s.outs}
    return sorted(f"{f}/.gitignore" if f != "." else ".gitignore" for f in folders)


def _identity(root: Path) -> list[str]:
    have = all(git(root, "config", key, check=False).stdout.strip() for key in ("user.name", "user.email"))
    if have:
        return []
    name, email = FALLBACK_IDENTITY
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def record(root: Path, params: Params, say: Callable[[str], None] = print) -> dict | None:
    """Push, commit, tag and record the version reports/deploy.json names; returns what was done (None: nothing
    registered by this run). Raises ConfigError for uncommitted inputs, ReleaseFailed when git or DVC fail."""
    from bigmodel_core.io import read_json
    from bigmodel_core.stages.spec import VERSION_FILE
    from bigmodel_core.tracking.registry import REPRO_COMMIT, REPRO_REMOTE, REPRO_TAG, record_reproduction

    root = Path(root)
    deploy_record = root / "reports" / "deploy.json"
    if not deploy_record.exists():
        return None
    deployed = read_json(deploy_record)
    name, version = deployed["model_name"], str(deployed["version"])
    preflight(root)
    changed = _changed_dvc_files(root)
    if changed:
        raise ConfigError(
            f"deploy.git_commit: {', '.join(changed)} no longer match(es) the data in the workspace: "
            "`dvc add` the data again and commit the .dvc file, then run again"
        )

    for source in unversioned_sources(root, params):
        say(
            f"release: warning: source {source} lies outside the pipeline's inputs (data/sources/): neither git nor "
            "DVC keeps it with this commit, so a reproduction reads it as it is then (put it in data/sources/)"
        )
    remote_name, url = remote(root, params, say)
    pushed = dvc(root, "push", "-r", remote_name)
    summary = [line for line in pushed.stdout.splitlines() if line.strip()]
    say(f"release: dvc push to {remote_name} ({url}): {summary[-1] if summary else 'done'}")

    paths = [p for p in (*COMMITTED, VERSION_FILE, *_output_gitignores(root)) if (root / p).exists()]
    git(root, "add", "--", *paths)
    staged = git(root, "diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0
    ev = read_json(root / "metrics" / "eval.json") if (root / "metrics" / "eval.json").exists() else {}
    if staged:
        message = (
            f"{name} v{version}: {'promoted' if deployed.get('promoted') else 'registered'}"
            + (f", test accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f}" if ev else "")
            + f"\n\nMLflow run {deployed.get('run_id')}. Recorded by `bigmodel run` (deploy.git_commit): "
            f"dvc.lock and params reproduce this version; its data and model are in DVC remote {remote_name}.\n"
        )
        identity = _identity(root)
        if identity:
            say(
                f"release: git has no user.name/user.email here: committing as {FALLBACK_IDENTITY[0]} "
                f"<{FALLBACK_IDENTITY[1]}>"
            )
        git(root, *identity, "commit", "-q", "--no-verify", "-m", message, "--", *paths)
    commit = git(root, "rev-parse", "HEAD").stdout.strip()
    tag = tag_name(name, version)
    existing = git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}", check=False)
    if existing.returncode == 0 and existing.stdout.strip() != commit:
        # a tag names one state for good: the version was recorded before (a re-run of the same model bundle)
        say(f"release: tag {tag} exists already at {existing.stdout.strip()[:12]}: left where it is")
        tag_commit = existing.stdout.strip()
    else:
        if existing.returncode != 0:
            git(
                root,
                *_identity(root),
                "tag",
                "-a",
                tag,
                "-m",
                f"{name} v{version} (MLflow run {deployed.get('run_id')})",
                commit,
            )
        tag_commit = commit
    record_reproduction(
        params,
        root,
        name,
        version,
        deployed.get("run_id"),
        {REPRO_COMMIT: tag_commit, REPRO_TAG: tag, REPRO_REMOTE: url},
    )
    line = (
        f"release: {'committed' if staged else 'nothing new to commit; HEAD is'} {commit[:12]} "
        f"({', '.join(paths)}), tag {tag}; recorded on {name} v{version}"
    )
    say(line)
    return {
        "commit": tag_commit,
        "tag": tag,
        "remote": remote_name,
        "remote_url": url,
        "committed": staged,
        "model_name": name,
        "version": version,
    }
