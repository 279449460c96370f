"""MkDocs hook: the reference pages, generated from the code at build time (nothing generated is committed).

- reference/params.md: every params.yaml key, walked from the pydantic models in bigmodel_core/config/
  (dotted key, type, limits, default, the Field's description). A field without a description stops the build.
- reference/cli.md: every `bigmodel` command with its arguments and options, read from the click objects that
  Typer builds from bigmodel_core/cli.py (not from --help text).
- reference/exit-codes.md: the exit codes, read from the `exit_code` of every BigmodelError subclass in
  bigmodel_core (found by parsing the source, so nothing heavy is imported) and from bigmodel_core.pipeline.interrupts.
- benchmarks.md: the marker `<!-- generated: baseline-results -->` becomes the table of benchmarks/results.json,
  the figures benchmarks/baseline.py writes, each row with the command that prints it.

The code is imported from the repository that holds mkdocs.yml (its folder goes first on sys.path), so a build
of a copy documents the copy. Registered in mkdocs.yml under `hooks:`.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import json
import shlex
import statistics
import signal
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

GENERATED = ("reference/params.md", "reference/cli.md", "reference/exit-codes.md")
RESULTS_MARKER = "<!-- generated: baseline-results -->"

#: One line per top-level section of params.yaml (the Params model's fields carry no description of their own).
#: A section missing here stops the build, like a key without a description.
SECTIONS = {
    "data": "Where the rows come from and which labels are valid (the ingest stage).",
    "clean": "How texts are repaired before they are judged (the clean stage; the served model applies the same).",
    "validate": "The data-quality rules, the data gate and drift against the champion's data (the validate stage). "
    "Each rule takes `policy`, `max_fraction` and its own settings (their descriptions name the rule); a setting of "
    "another rule is an error naming it.",
    "augment": "Train-only variants of training rows (the augment stage).",
    "split": "How rows are assigned to train, validation and test (the split stage).",
    "tokenizer": "The tokenizer trained on the train split (transformer), and lowercasing and truncation.",
    "model": "Which model the train stage builds, or `auto`: the candidates it chooses from. Each kind takes its "
    "own keys (their descriptions name the kind) and `selection` and `augmented_rows`; a key of another kind is an "
    "error naming it, except under `auto`, whose keys are where its candidates start.",
    "train": "The training loop: batches, optimizer, schedule, devices, checkpoints, tuning.",
    "evaluate": "Test metrics and the model gate: floors, the comparison with the champion, budgets.",
    "deploy": "Registration, who may move the champion alias, and the git/DVC release.",
    "tracking": "Where MLflow records runs and keeps the registry.",
    "flow": "Retries of the Prefect flow.",
    "notify": "Who hears about closed gates, failures and promotions.",
}


# --------------------------------------------------------------------------- helpers
def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _import_from(root: Path, name: str):
    """Import `name` with `root` first on sys.path, so that a copy of the repository documents itself."""
    if str(root) not in sys.path[:1]:
        sys.path.insert(0, str(root))
    return importlib.import_module(name)


def _md(text: str) -> str:
    """Text for a table cell: pipes and line breaks escaped; <, >, &, *, _ escaped outside `code` spans."""
    parts = str(text).replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = (parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("*", r"\*").replace("_", r"\_"))
    return "`".join(parts).replace("|", r"\|")


def _code(text: str) -> str:
    text = str(text).replace("|", r"\|")
    return f"``{text}``" if "`" in text else f"`{text}`"


# --------------------------------------------------------------------------- params
def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] -> X."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_args(tp: Any) -> tuple | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _type_name(tp: Any) -> str:
    tp = _strip(tp)
    if tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any"
    args = _union_args(tp)
    if args is not None:
        models = [a for a in map(_strip, args) if _is_model(a)]
        if models and len(models) == len([a for a in args if a is not type(None)]):
            return " | ".join(["mapping (its keys follow)"] + (["null"] if type(None) in args else []))
        return " | ".join(_type_name(a) for a in args)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (list, tuple, set, frozenset):
        inner = typing.get_args(tp)
        return f"list of {_type_name(inner[0])}" if inner else "list"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"mapping of {_type_name(k)} to {_type_name(v)}"
    if _is_model(tp):
        return "mapping (its keys follow)"
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
        getattr(tp, "__name__", ""), getattr(tp, "__name__", str(tp)))


def _limits(field) -> str:
    marks = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    out = []
    for m in field.metadata:
        for attr, sign in marks.items():
            value = getattr(m, attr, None)
            if value is not None:
                out.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
    return ", ".join(out)


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if _is_model(type(value)):
        return ""  # a section: its keys follow
    if isinstance(value, dict) and value and all(_is_model(type(v)) for v in value.values()):
        return "see below"  # one entry per name, in a table of their own
    return _code(_yaml(value))


def _yaml(value: Any) -> str:
    """A default as it would be written in params.yaml (flow style)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (not value.strip() or value.strip() != value):
        return json.dumps(value)
    return str(value)


class _Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.missing: list[str] = []
        self.extra_tables: list[str] = []

    def add(self, key: str, field, note: str = "", section: bool = False) -> None:
        description = (field.description or "").strip()
        if not description:
            self.missing.append(key)
        type_ = "section (its keys follow)" if section else _type_name(field.annotation)
        self.rows.append((key, type_, _limits(field), _default(field),
                          description + (f" ({note})" if note else "")))


def _walk(model: type, prefix: str, out: _Rows) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}" if prefix else (field.alias or name)
        tp = _strip(field.annotation)
        args = _union_args(tp)
        if args is not None and type(None) in args:  # X | None: document X's structure
            rest = [a for a in args if a is not type(None)]
            tp = _strip(rest[0]) if len(rest) == 1 else tp
        origin = typing.get_origin(tp)
        out.add(key, field, section=_is_model(tp))
        if _is_model(tp):
            _walk(tp, key, out)
        elif origin is list and typing.get_args(tp):
            _walk_items(_strip(typing.get_args(tp)[0]), f"{key}[]", out)
        elif origin is dict and _is_model(_strip(typing.get_args(tp)[1])):
            _walk(_strip(typing.get_args(tp)[1]), f"{key}.<name>", out)
            default = field.get_default(call_default_factory=True, validated_data={})
            if default:
                out.extra_tables.append(_defaults_table(key, default))


def _walk_items(tp: Any, prefix: str, out: _Rows) -> None:
    if _is_model(tp):
        _walk(tp, prefix, out)
        return
    members = [_strip(a) for a in (_union_args(tp) or ())]
    if not members or not all(map(_is_model, members)):
        return
    # a discriminated union (model.candidates): each key once, with the kinds that take it
    seen: dict[str, tuple[Any, list[str]]] = {}
    for m in members:
        kind = typing.get_args(m.model_fields["kind"].annotation)[0] if "kind" in m.model_fields else m.__name__
        for name, field in m.model_fields.items():
            seen.setdefault(name, (field, []))[1].append(str(kind))
    every = {str(typing.get_args(m.model_fields["kind"].annotation)[0]) for m in members if "kind" in m.model_fields}
    for name, (field, kinds) in sorted(seen.items(), key=lambda item: item[0] != "kind"):
        if name == "kind":
            kind_field = copy.copy(field)
            kind_field.annotation = typing.Literal[tuple(kinds)]  # type: ignore[misc]
            out.add(f"{prefix}.kind", kind_field)
            continue
        out.add(f"{prefix}.{name}", field, "" if set(kinds) == every else "kinds: " + ", ".join(kinds))


def _defaults_table(key: str, default: dict) -> str:
    lines = [f"Defaults of `{key}`, per entry (a setting left out of an entry keeps these):", "",
             "| entry | settings |", "| --- | --- |"]
    for name, value in default.items():
        lines.append(f"| `{name}` | {_code(_yaml(value))} |")
    return "\n".join(lines)


def params_page(root: Path) -> tuple[str, list[str]]:
    config = _import_from(root, "bigmodel_core.config")
    params = config.Params
    problems = []
    out = ["# params.yaml keys", "",
           "Every key of `params.yaml`, generated from `bigmodel_core/config/` when the docs are built. Unknown keys "
           "are errors, and every error names the key and the rule. `[]` stands for any item of a list "
           "(`data.sources[].path`: the `path` of each source), `<name>` for any key of a mapping. Limits are those "
           "the loader enforces.", ""]
    for name, field in params.model_fields.items():
        section = field.alias or name
        intro = SECTIONS.get(section)
        if not intro:
            problems.append(f"params section '{section}' has no line in SECTIONS (docs/hooks/reference.py)")
            intro = ""
        rows = _Rows()
        tp = _strip(field.annotation)
        if _is_model(tp):
            _walk(tp, section, rows)
        else:
            rows.add(section, field)
        problems += [f"params key '{k}' has no description (Field(description=...) in bigmodel_core/config/)"
                     for k in rows.missing]
        out += [f"## {section}", "", intro, "", "| key | type | limits | default | description |",
                "| --- | --- | --- | --- | --- |"]
        for key, type_, limits, default, desc in rows.rows:
            anchor = key.replace("[]", "").replace("<name>", "name")
            out.append(f'| <a id="{anchor}"></a>`{key}` | {_md(type_)} | '
                       f"{limits} | {default} | {_md(desc)} |")
        for table in rows.extra_tables:
            out += ["", table]
        out.append("")
    return "\n".join(out), problems


# --------------------------------------------------------------------------- cli
def _commands(cmd, path: list[str]):
    if hasattr(cmd, "commands"):  # a group: its commands, in the order they were declared
        yield path, cmd
        for name, sub in cmd.commands.items():
            yield from _commands(sub, [*path, name])
    else:
        yield path, cmd


def _param_default(p) -> str:
    if getattr(p, "is_flag", False) and not p.secondary_opts:
        return ""
    if p.required:
        return "required"
    d = p.default
    if d is None or (p.multiple and not d):
        return ""
    if getattr(p, "is_flag", False):
        return _code(p.opts[0] if d else p.secondary_opts[0])
    return _code(d)


def _param_type(p) -> str:
    if getattr(p, "is_flag", False):
        return "flag"
    names = {"str": "text", "text": "text", "int": "integer", "integer": "integer", "float": "number",
             "path": "path", "boolean": "flag"}
    name = names.get(p.type.name, p.type.name)
    if "range" in p.type.name:
        name = names.get(p.type.name.split()[0], "number")
        lo, hi = getattr(p.type, "min", None), getattr(p.type, "max", None)
        bounds = [f"≥ {lo}" if lo is not None else "", f"≤ {hi}" if hi is not None else ""]
        name += " (" + ", ".join(b for b in bounds if b) + ")"
    if p.multiple or p.nargs == -1:
        name += ", repeatable" if p.param_type_name == "option" else ", any number"
    return name


def cli_page(root: Path) -> tuple[str, list[str]]:
    import inspect

    import typer

    cli = _import_from(root, "bigmodel_core.cli")
    top = typer.main.get_command(cli.app)
    out = ["# Commands", "",
           "Every `bigmodel` command with its arguments and options, generated from the command-line app "
           "(`bigmodel_core/cli.py`) when the docs are built. `bigmodel COMMAND --help` prints the same. Exit "
           "codes: [Exit codes](exit-codes.md).", ""]
    problems: list[str] = []
    for path, cmd in _commands(top, ["bigmodel"]):
        name = " ".join(path)
        is_group = hasattr(cmd, "commands")
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        opts = [p for p in cmd.params if p.param_type_name == "option"]
        if is_group and len(path) > 1 and not opts:
            out += [f"## {name}", "", _md(inspect.cleandoc(cmd.help or "")), "",
                    "Commands: " + ", ".join(f"[`{name} {sub}`](#{'-'.join([*path, sub])})" for sub in cmd.commands),
                    ""]
            continue
        usage = " ".join([name, *(["[OPTIONS]"] if opts else []), *(["COMMAND"] if is_group else []),
                          *((a.name.upper() + ("..." if a.nargs == -1 else "")) if a.required else
                            f"[{a.name.upper()}{'...' if a.nargs == -1 else ''}]" for a in args)])
        help_text = inspect.cleandoc(cmd.help or "")
        if not help_text:
            problems.append(f"command '{name}' has no help (its docstring in bigmodel_core/cli.py)")
        first, _, rest = help_text.partition("\n\n")
        out += [f"## {name}" + (" {#bigmodel}" if len(path) == 1 else ""), "", "```", usage, "```", "",
                first.replace("\n", " "), ""]
        if rest:
            out += [rest if not rest.lstrip().startswith("bigmodel ") else "```\n" + rest + "\n```", ""]
        if args or opts:
            out += ["| argument or option | type | default | what it does |", "| --- | --- | --- | --- |"]
            for p in args + opts:
                names = (p.name.upper() if p.param_type_name == "argument" else
                         ", ".join(p.opts) + ("".join(f" / {o}" for o in p.secondary_opts)))
                out.append(f"| {_code(names)} | {_md(_param_type(p))} | {_param_default(p)} | "
                           f"{_md(getattr(p, 'help', None) or '')} |")
            out.append("")
        if is_group:
            out += ["Commands: " + ", ".join(f"[`{sub}`](#{'-'.join([*path, sub])})" for sub in cmd.commands), ""]
    return "\n".join(out), problems


# --------------------------------------------------------------------------- exit codes
def _error_classes(root: Path) -> list[dict]:
    """Every subclass of BigmodelError in bigmodel_core, with its exit_code (own or inherited) and docstring."""
    found: dict[str, dict] = {}
    for path in sorted((root / "bigmodel_core").rglob("*.py")):
        with warnings.catch_warnings():  # a module's invalid escape sequence is not this page's business
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            code = None
            for stmt in node.body:
                if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "exit_code"
                                                         for t in stmt.targets)
                        and isinstance(stmt.value, ast.Constant)):
                    code = stmt.value.value
            found[node.name] = {"name": node.name, "bases": [b.id for b in node.bases if isinstance(b, ast.Name)],
                                "code": code, "doc": ast.get_docstring(node) or "",
                                "where": str(path.relative_to(root))}

    def resolve(name: str, seen=()) -> dict | None:
        c = found.get(name)
        if c is None or name in seen:
            return None
        if name == "BigmodelError":
            return c
        for b in c["bases"]:
            base = resolve(b, (*seen, name))
            if base is not None:
                if c["code"] is None:
                    c["code"] = base["code"]
                return c
        return None

    return [c for n, c in found.items() if resolve(n) is not None]


def exit_codes_page(root: Path) -> tuple[str, list[str]]:
    errors = _error_classes(root)
    problems = [f"{c['where']}: {c['name']} has no docstring (it is the exit code's description)"
                for c in errors if not c["doc"]]
    interrupts = _import_from(root, "bigmodel_core.pipeline.interrupts")
    errors_mod = _import_from(root, "bigmodel_core.errors")
    permanent = sorted(errors_mod.PERMANENT_EXIT_CODES)
    by_code: dict[int, list[dict]] = {}
    for c in errors:
        by_code.setdefault(c["code"], []).append(c)
    out = ["# Exit codes", "",
           "Every command ends a failure with one `error:` line on stderr (the cause, naming the file, key, row or "
           "rule) and one of these exit codes. Generated when the docs are built from the `exit_code` of each "
           "error class in `bigmodel_core` and from `bigmodel_core/pipeline/interrupts.py`.", "",
           "| code | meaning | raised as |", "| ---: | --- | --- |",
           "| 0 | success, also \"nothing to do\" | |"]
    for code in sorted(by_code):
        # one row per error class, the base class last (its docstring is the general one)
        classes = sorted(by_code[code], key=lambda c: (c["name"] == "BigmodelError", c["name"]))
        for i, c in enumerate(classes):
            anchor = f'<a id="exit-{code}"></a>' if i == 0 else ""
            meaning = _md(c["doc"].split("\n\n")[0].replace("\n", " "))
            out.append(f"| {anchor}{code} | {meaning} | `{c['name']}` ({c['where']}) |")
        if code == 1:
            out.append("| 1 | anything else that stopped a command or a stage: a permission, a full disk, a bug (the line "
                       "names the stage and the cause; the traceback is in the stage's Prefect task log) | any other "
                       "exception |")
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        code = interrupts.Interrupted(sig).exit_code
        what = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "a scheduler, `kill`, a container stopping",
                signal.SIGHUP: "the terminal closed"}[sig]
        out.append(f'| <a id="exit-{code}"></a>{code} | interrupted by {sig.name} ({what}); the last good outputs '
                   f"and `dvc.lock` are unchanged | `Interrupted` (bigmodel_core/pipeline/interrupts.py) |")
    out += ["", "The flow retries a failed stage `flow.retries` times, but never one that exited "
            + ", ".join(map(str, permanent)) + " (`PERMANENT_EXIT_CODES` in `bigmodel_core/errors.py`: retrying "
            "cannot help), nor an interrupted one.", ""]
    return "\n".join(out), problems


# --------------------------------------------------------------------------- benchmarks/results.json
def _baseline_module(root: Path):
    spec = importlib.util.spec_from_file_location("_bigmodel_benchmarks_baseline", root / "benchmarks" / "baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command(bench, entry: dict) -> str:
    dataset, model = entry["dataset"], entry["model"]
    cmd = [".venv/bin/python", "benchmarks/baseline.py", "--dataset", dataset, "--model", model]
    trials = bench.TUNE_TRIALS
    for part in entry.get("params_file", "").split(" -S ")[1:]:
        if part.startswith("train.tune.trials=") and model == "auto-tuned":
            trials = int(part.split("=", 1)[1])
    if trials != bench.TUNE_TRIALS:
        cmd += ["--tune-trials", str(trials)]
    described = bench.describe(dataset, model, trials)
    given = entry.get("params_file", "")
    if given.startswith(described):
        for extra in given[len(described):].split(" -S ")[1:]:
            cmd += ["--set", extra.strip()]
    return shlex.join(cmd)


def results_table(root: Path) -> str:
    """One table per dataset: each model's test figures beside the baseline's, and the commands that print them."""
    path = root / "benchmarks" / "results.json"
    if not path.exists():
        raise PluginError(f"{path}: not found; benchmarks.md shows its figures")
    results = json.loads(path.read_text())
    bench = _baseline_module(root)
    order = {d: i for i, d in enumerate(bench.DATASETS)}
    models = {m: i for i, m in enumerate(bench.MODELS)}
    entries = sorted(results.values(), key=lambda e: (order.get(e["dataset"], 99), models.get(e["model"], 99)))
    out: list[str] = []
    machines = set()
    marked = False
    for dataset in sorted({e["dataset"] for e in entries}, key=lambda d: order.get(d, 99)):
        rows = [e for e in entries if e["dataset"] == dataset]
        # every model of a dataset splits the same rows the same way, so the baseline scores the same on each; a
        # row whose baseline differs was measured on another split (an earlier run) and is marked
        scores = [round(e["baseline"]["macro_f1"], 6) for e in rows]
        usual = max(set(scores), key=scores.count)
        same = [e for e in rows if round(e["baseline"]["macro_f1"], 6) == usual]
        base = dict(same[0]["baseline"], seconds=statistics.median(e["baseline"]["seconds"] for e in same))
        out += [f"### {dataset}", "",
                f"{same[0]['ours']['test_rows']:,} test rows. Seconds: wall (CPU); the baseline's: the median over "
                "the rows.", "",
                "| model | chosen by auto | accuracy | macro-F1 | macro-F1 − baseline's | seconds |",
                "| --- | --- | ---: | ---: | ---: | ---: |"]
        for e in rows:
            o, b = e["ours"], e["baseline"]
            mark = "" if round(b["macro_f1"], 6) == usual else " †"
            marked = marked or bool(mark)
            cpu = o.get("cpu_seconds")
            seconds = f"{o['seconds']:,.1f}" + (f" ({cpu:,.1f})" if cpu is not None else "")
            gain = f"{(o['macro_f1'] - b['macro_f1']):+.4f}".replace("-0.0000", "+0.0000")
            if e.get("machine"):
                machines.add(f"{e['machine'].get('cpus')} CPUs, Python {e['machine'].get('python')}")
            out.append(f"| {e['model']}{mark} | {o.get('chosen') or ''} | {o['accuracy']:.4f} | {o['macro_f1']:.4f} | "
                       f"{gain} | {seconds} |")
        out += [f"| TF-IDF + LR baseline | | {base['accuracy']:.4f} | {base['macro_f1']:.4f} | | "
                f"{base['seconds']:,.1f} |", ""]
        commands: dict[str, list[str]] = {}
        for e in same:  # a marked row is measured again by its dataset's command, on the other rows' split
            command = _command(bench, e).replace(f"--model {e['model']}", "--model MODEL")
            commands.setdefault(command, []).append(e["model"])
        for command, names in commands.items():
            which = "" if len(commands) == 1 else f" ({', '.join(names)})"
            out += [f"Command{which}, MODEL being the row's model: {_code(command)}", ""]
    if marked:
        out += ["† The baseline scores differently on this row than on the other rows of its dataset, so its split "
                "is not theirs: the row is left from an earlier run of the benchmark. The dataset's command measures "
                "it again on the others' split.", ""]
    if machines:
        out += [f"Machine{'s' if len(machines) > 1 else ''} of these figures (from the file): "
                + "; ".join(sorted(machines)) + ", CPU only.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- mkdocs events
def on_files(files: Files, config) -> Files:
    root = _root(config)
    problems: list[str] = []
    for uri, make in zip(GENERATED, (params_page, cli_page, exit_codes_page)):
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"docs/{uri} is generated when the docs are built; remove the file from docs/")
        content, found = make(root)
        problems += found
        files.append(File.generated(config, uri, content=content))
    if problems:
        raise PluginError("the reference cannot be generated:\n  - " + "\n  - ".join(problems))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if RESULTS_MARKER in markdown:
        markdown = markdown.replace(RESULTS_MARKER, results_table(_root(config)))
    return markdown
