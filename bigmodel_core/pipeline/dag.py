"""Read dvc.yaml into a stage graph; the Prefect flow runs stages in this order.

An edge A -> B exists when one of B's deps is (or lies inside) one of A's outs, metrics or plots.
"""

from __future__ import annotations

import ast
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


def render_dvc_yaml(installed: bool = False, params: dict | None = None) -> str:
    """dvc.yaml as the stages declare it (bigmodel_core.stages.STAGES order, each module's SPEC), for the params
    file `params` (its parsed YAML; default: the params.yaml that `bigmodel init` writes)."""
    from bigmodel_core.stages import STAGES, get

    if params is None:
        params = template_params()

    lines = [((HEADER_INSTALLED if installed else HEADER) + HEADER_COMMON).rstrip("\n"), "stages:"]
    for i, name in enumerate(STAGES):
        spec = get(name).SPEC
        if i:
            lines.append("")
        lines += [f"  {name}:", f"    cmd: bigmodel stage {name}", "    deps:"]
        lines += [f"      - {d}" for d in stage_deps(name, installed)]
        lines += ["    params:"] + [f"      - {p}" for p in declared_params(spec.params, params)]
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


def template_params() -> dict:
    """The params.yaml `bigmodel init` writes (this repository's params.yaml holds the same keys)."""
    from importlib import resources

    return yaml.safe_load(resources.files("bigmodel_core").joinpath("templates/params.yaml").read_text()) or {}


def declared_params(keys, params: dict) -> list[str]:
    """The params keys dvc.yaml can declare for a stage that reads `keys`: those that the params file sets.
    DVC refuses a declared key that the file lacks; a key left out takes its default from the typed config,
    which is code among the stage's deps. (`bigmodel stage` warns when the file sets a key the stage reads
    but dvc.yaml does not declare.)"""

    def present(key: str) -> bool:
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [k for k in keys if present(k)]


def undeclared_params(stage: str, dvc_file: Path, params_file: Path) -> list[str]:
    """Keys that params_file sets and `stage` reads (its SPEC.params) but dvc_file does not declare for it: DVC
    would not re-run the stage when they change. Empty when either file is missing or unreadable."""
    from bigmodel_core.stages import get

    try:
        doc = yaml.safe_load(Path(dvc_file).read_text()) or {}
        raw = yaml.safe_load(Path(params_file).read_text()) or {}
        listed = doc["stages"][stage].get("params") or []
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return []
    have = [p for p in listed if isinstance(p, str)]
    wanted = declared_params(get(stage).SPEC.params, raw)
    return [k for k in wanted if not any(k == h or k.startswith(h + ".") for h in have)]


def _comment(text: str, prefix: str, width: int = 115) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            out.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([prefix + line] if line else [])


def stage_deps(stage: str, installed: bool = False) -> list[str]:
    """A stage's DVC deps: its code, then its inputs. The code is, in a clone of this repository, every project
    module its import closure reaches (`import_closure` of its module and its SPEC.code); installed, the version
    file, which stands for all of it."""
    from bigmodel_core.stages import get
    from bigmodel_core.stages.spec import LOCATIONS, VERSION_FILE

    spec = get(stage).SPEC
    more = (c.removesuffix(".py").replace("/", ".") for c in spec.code)
    code = [VERSION_FILE] if installed else import_closure(f"bigmodel_core.stages.{stage}", *more)
    return [*code, *(LOCATIONS.get(i, i) for i in spec.inputs)]


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]  # bigmodel_core/


def _module_file(dotted: str, root: Path) -> Path | None:
    """The source file of project module `dotted` (a module file or a package's __init__.py), or None."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return None
    base = root.parent.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(path: Path, dotted: str, root: Path) -> set[str]:
    """Project modules that `path` (module `dotted`) imports anywhere: at its top, inside functions, methods and
    try blocks alike; not under `if TYPE_CHECKING:`, which never runs."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                visit(stmt)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                package = dotted.split(".") if is_package else dotted.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            # `from package import name`: name may be a submodule
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    out: set[str] = set()
    for name in found:
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if _module_file(m, root) is not None}


def import_closure(module: str, *more: str, root: Path | None = None) -> list[str]:
    """Every project source file that importing and running `module` (and `more`) can execute, found
    statically: the modules it imports, what those import, and so on (function-level imports included, since
    a stage's code imports most of its work where it uses it), with the package __init__.py files on the way.
    Paths are relative to the repository root (the package's parent), sorted, `module`'s own file first.
    `root`: the top package's folder (default: bigmodel_core's)."""
    root = root or _package_root()
    seen = {module, *more}
    todo = [module, *more]
    while todo:
        name = todo.pop()
        path = _module_file(name, root)
        if path is None:
            raise ValueError(f"{name}: not a module of {root.name}")
        for dep in _imported(path, name, root) - seen:
            seen.add(dep)
            todo.append(dep)

    files = {m: _module_file(m, root) for m in seen}
    # a package __init__.py with nothing but a docstring runs nothing: left out (it is listed once it has code)
    ran = {f.relative_to(root.parent).as_posix() for m, f in files.items() if f and m != module and _runs(f)}
    # files a module reads beside itself (its DATA_FILES), such as charset's committed case-folding table
    ran |= {d.relative_to(root.parent).as_posix() for f in files.values() if f for d in _data_files(f)}
    return [files[module].relative_to(root.parent).as_posix(), *sorted(ran)]  # type: ignore[union-attr]


def _data_files(path: Path) -> list[Path]:
    """The files a module declares it reads, `DATA_FILES = ("name", ...)` at its top level (names beside it)."""
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "DATA_FILES" for t in node.targets)
            and isinstance(node.value, ast.Tuple)
        ):
            return [
                path.with_name(e.value)
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
    return []


def _runs(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return path.name != "__init__.py" or any(
        not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str))
        for s in body
    )
