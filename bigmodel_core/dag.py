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
