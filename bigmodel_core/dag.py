"""Read dvc.yaml into a stage graph; the Prefect flow runs stages in this order.

An edge A -> B exists when one of B's deps is (or lies inside) one of A's outs, metrics or plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bigmodel_core.errors import ConfigError


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)


def _paths(entries) -> list[str]:
    out = []
    for e in entries or []:
        out.append(next(iter(e)) if isinstance(e, dict) else str(e))
    return [p.rstrip("/") for p in out]


def load_dag(path: str | Path = "dvc.yaml") -> list[Stage]:
    """Stages of dvc.yaml in a topological order (ties keep the file's order)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the workspace root)")
    doc = yaml.safe_load(path.read_text()) or {}
    raw = doc.get("stages") or {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: no stages declared")
    stages = {}
    for name, spec in raw.items():
        if "foreach" in spec or "matrix" in spec:
            raise ConfigError(f"{path}: stage {name!r}: foreach/matrix stages are not supported by the flow")
        outs = _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
        stages[name] = Stage(name=name, cmd=spec["cmd"], deps=_paths(spec.get("deps")), outs=outs)
    for s in stages.values():
        for other in stages.values():
            if other.name == s.name:
                continue
            if any(d == o or d.startswith(o + "/") or o.startswith(d + "/") for d in s.deps for o in other.outs):
                s.upstream.append(other.name)
    order: list[Stage] = []
    done: set[str] = set()
    pending = list(stages.values())
    while pending:
        ready = [s for s in pending if all(u in done for u in s.upstream)]
        if not ready:
            raise ConfigError(f"{path}: cycle among stages {[s.name for s in pending]}")
        order.append(ready[0])
        done.add(ready[0].name)
        pending.remove(ready[0])
    return order


HEADER = """\
# The DAG, generated from the stages' declarations (SPEC in each bigmodel_core/stages/*.py) by
# `bigmodel dag --write`: edit those, not this file (a test fails when the two differ).
# Every stage runs `bigmodel stage NAME`; deps and params list exactly what it reads.
"""
HEADER_INSTALLED = """\
# The DAG, written by `bigmodel init` from the installed bigmodel's stage declarations
# (`bigmodel dag --write` writes it again). Every stage runs `bigmodel stage NAME`; deps and params list
# what it reads, and bigmodel.version stands for its code: a new bigmodel version re-runs the stages.
"""
HEADER_COMMON = """\
# Outputs are `persist: true` so that a failing stage leaves the last good output in place
# (the stage itself swaps new outputs in atomically).
# metrics/*.json and plots/*.csv are `cache: false`: git tracks them (commit them with dvc.lock after
# a run), which is what lets `dvc exp show`, `dvc metrics diff` and `dvc plots diff` read them.
"""


def installed_layout(root: str | Path = ".") -> bool:
    """True in a workspace of one's own (no bigmodel_core/ sources: the stages depend on bigmodel.version),
    False in a clone of this repository (the stages depend on their source files)."""
    return not (Path(root) / "bigmodel_core" / "stages").is_dir()


def render_dvc_yaml(installed: bool = False) -> str:
    """dvc.yaml as the stages declare it (bigmodel_core.stages.STAGES order, each module's SPEC)."""
    from bigmodel_core.stages import STAGES, get

    lines = [((HEADER_INSTALLED if installed else HEADER) + HEADER_COMMON).rstrip("\n"), "stages:"]
    for i, name in enumerate(STAGES):
        spec = get(name).SPEC
        if i:
            lines.append("")
        lines += [f"  {name}:", f"    cmd: bigmodel stage {name}", "    deps:"]
        lines += [f"      - {d}" for d in spec.deps(name, installed)]
        lines += ["    params:"] + [f"      - {p}" for p in spec.params]
        for kind in ("outs", "metrics", "plots"):
            outs = [o for o in spec.outs if o.kind == kind]
            if outs:
                lines.append(f"    {kind}:")
            for o in outs:
                if o.note:
                    lines += _comment(o.note, "      # ")
                lines.append(f"      - {o.path}:")
                if not o.cache:
                    lines.append("          cache: false")
                lines.append("          persist: true")
                lines += [f"          {k}: {v}" for k, v in o.plot]
    return "\n".join(lines) + "\n"


def _comment(text: str, prefix: str, width: int = 115) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            out.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([prefix + line] if line else [])
