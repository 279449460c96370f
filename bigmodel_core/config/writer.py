"""params.yaml written from the typed config: the defaults live in the config classes only.

`render_params(head)` writes every section after `data:` from `Params` (its defaults) and `DEMO_CHOICES` (the
values the demo run chooses instead, each named once, with its reason), with a short comment per key from
`COMMENTS`. `head` is the hand-written part above `clean:` (the opening comment and the data section: where the
demo's rows come from, which no default can say). The repository's params.yaml and the workspace template
(bigmodel_core/templates/params.yaml) are both rendered this way; a test requires the committed files to equal
their rendering (`python -m bigmodel_core.config.writer` rewrites them).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

#: What the demo run sets other than the typed defaults (the keys below `data:`), and why.
DEMO_CHOICES: dict[str, dict[str, Any]] = {
    # the demo's texts are short: a tighter cap than the default 4000 costs nothing and bounds its outliers
    "clean": {"max_chars": 2000},
    "validate": {
        # the demo's dirt is injected at known rates: a gate per rule catches a generator that went wrong
        "rules": {
            "empty_text": {"max_fraction": 0.05},
            "missing_label": {"max_fraction": 0.05},
            "unknown_label": {"max_fraction": 0.05},
            "conflicting_labels": {"max_fraction": 0.05},
            "duplicate": {"max_fraction": 0.2},
            "undecodable": {"max_fraction": 0.05},
            "too_short": {"policy": "quarantine", "max_fraction": 0.05},
            "control_chars": {"max_fraction": 0.05},
            "near_duplicate": {"min_jaccard": 0.7},
        },
        # 3,000 rows over 4 topics: stricter floors than the defaults' 50 rows and 5 per class
        "min_rows": 200,
        "min_rows_per_class": 20,
    },
    # a small vocabulary and short inputs: the demo's texts are a few dozen words
    "tokenizer": {"vocab_size": 4000, "max_length": 64},
    # a transformer sized for the demo's 3,000 rows (it is auto's candidate on a GPU)
    "model": {"d_model": 64, "d_ff": 128},
    "train": {"lr": 0.002},
    # the demo's topics are easy: floors above the defaults' 0.5
    "evaluate": {"min_accuracy": 0.6, "min_macro_f1": 0.6},
    "deploy": {"model_name": "bigmodel-demo"},
}

#: The keys written per section, in order, with a short comment (empty: none). A key left out keeps its default
#: without being written.
COMMENTS: dict[str, dict[str, str]] = {
    "clean": {
        "unescape_html": "",
        "repair_entities": "",
        "strip_html": "",
        "normalize_whitespace": "",
        "lowercase": "",
        "max_chars": "",
    },
    "validate": {
        "rules": "",
        "max_quarantine_fraction": "",
        "min_rows": "",
        "min_rows_per_class": "",
        "examples": "",
        "fixed_test": "a source's fixed test rows are scored as given (rules reported, not enforced)",
        "drift": "the passing rows against the champion's data (its profile travels in its bundle)",
        "drift.policy": "fail closes the data gate, warn reports, off skips",
        "drift.max_label_shift": "L-infinity distance between label priors",
        "drift.max_length_js": "Jensen-Shannon divergence of word-length histograms",
        "drift.max_oov_increase": "rise in the share of words outside the champion's vocabulary",
    },
    "augment": {"enabled": "", "copies": "", "word_dropout": "", "swap_prob": "", "seed": ""},
    "split": {"val_fraction": "", "test_fraction": "", "salt": ""},
    "tokenizer": {
        "kind": "deterministic; wordpiece training is not (see bigmodel_core/config/prep.py)",
        "vocab_size": "",
        "min_frequency": "",
        "lowercase": "",
        "max_length": "",
        "truncation": "head | tail | head_tail: which part of a long text is kept",
    },
    "model": {
        "kind": "auto | linear | bag | transformer | pretrained (docs/models.md)",
        "candidates": "auto: null = linear and bag (+ transformer on a GPU or from 100,000 train rows); or a list",
        "#": "the keys below set the transformer (a single kind, or auto's transformer candidate)",
        "d_model": "",
        "n_layers": "",
        "n_heads": "",
        "d_ff": "",
        "dropout": "",
        "attention_dropout": "> 0 turns off the fused attention kernels",
        "pooling": "",
    },
    "train": {
        "epochs": "",
        "batch_size": "",
        "grad_accum": "micro-batches per optimizer step",
        "lr": "",
        "weight_decay": "",
        "warmup_fraction": "",
        "schedule": "linear | cosine | constant, after warm-up",
        "grad_clip": "",
        "label_smoothing": "",
        "patience": "early stopping on val macro-F1",
        "seed": "",
        "device": "cuda when there is one",
        "precision": "bf16 autocast on CUDA",
        "compile": "torch.compile (CUDA only)",
        "num_threads": "",
        "nproc": "> 1: data-parallel (DDP) over this many processes",
        "log_every": "steps between loss/lr/grad-norm/tokens-per-second reports (and MLflow points)",
        "checkpoint_every": "steps between resumable checkpoints (also at each epoch end)",
        "tune": 'Optuna search of each candidate\'s settings on the validation split (docs/models.md, "Tuning")',
        "tune.trials": "most trials per candidate (0 and minutes null: no tuning)",
        "tune.minutes": "wall-clock budget of all tuning",
    },
    "evaluate": {
        "min_accuracy": "",
        "min_macro_f1": "",
        "max_regression": "",
        "batch_size": "",
        "slice_columns": "more test-split columns to slice by (text-length quartiles and source always are)",
        "min_slice_rows": "smaller slices are reported, not judged",
        "max_slice_regression": "per slice: macro-F1 may fall at most this below the champion's (null: report only)",
        "baseline": "TF-IDF + logistic regression on the same split, reported beside the model",
        "min_gain_over_baseline": "macro-F1 may be at most this far below the baseline's (null: report only)",
        "max_latency_p95_ms": "p95 of one-text predictions, ms (null: report only)",
        "max_model_mb": "model bundle size on disk, MB (null: report only)",
        "allow_label_change": "a label set other than the champion's closes the gate unless true",
    },
    "deploy": {
        "model_name": "",
        "champion_alias": "",
        "challenger_alias": "",
        "git_commit": "true: each run that registers a version commits dvc.lock, params and metrics, tags "
        "model/<name>/v<version> and pushes data and model with DVC (bigmodel verify-repro)",
        "dvc_remote": "the DVC remote to push to (null: the default one, else a folder at local_remote)",
        "local_remote": "",
    },
    "tracking": {"uri": "", "experiment": "", "artifact_root": ""},
    "flow": {"retries": "", "retry_delay_seconds": ""},
    "notify": {
        "#": "Apprise URLs that hear when a gate closes, a run fails or a model is promoted "
        '(docs/runs.md, "Notifications")',
        "urls": "",
        "on": "quoted: YAML 1.1 readers take a bare on for true",
        "timeout_seconds": "",
    },
}
#: A rule's comment, after its line.
RULE_COMMENTS = {
    "undecodable": "U+FFFD: bytes a source with undecodable: quarantine replaced",
    "control_chars": "C0/C1 control characters other than tab and newlines",
    "html_left": "tags or entities still there after clean",
    "near_duplicate": "MinHash; warn keeps twins in one split",
    "label_noise": "labels a cross-validated model contradicts; 0 rows: off",
    "class_imbalance": "largest class / smallest class, passing rows",
    "too_few_rows_per_class": "fewer than min_rows_per_class passing rows",
    "truncated": "passing rows with more words than tokenizer.max_length",
}
COLUMN = 28  # where a key's comment starts


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_./:+-][A-Za-z0-9_./:+ -]*", value):
        return json.dumps(value)
    return str(value)


def _commented(text: str, comment: str, column: int = COLUMN) -> str:
    """text, then `# comment` from `column` on (two spaces after a longer text), wrapped at 130 characters."""
    if not comment:
        return text
    start = text.ljust(column) if len(text) < column else text + "  "
    width = max(130 - len(start) - 2, 40)
    parts = textwrap.wrap(comment, width)
    return "\n".join([f"{start}# {parts[0]}", *(f"{' ' * len(start)}# {p}" for p in parts[1:])])


def _line(indent: str, key: str, value: str, comment: str) -> str:
    return _commented(f"{indent}{key}: {value}".rstrip(), comment)


def _rule(name: str, rule: dict[str, Any]) -> str:
    shown = {"policy": rule["policy"]}
    if rule.get("max_fraction", 1.0) != 1.0:
        shown["max_fraction"] = rule["max_fraction"]
    shown.update({k: v for k, v in rule.items() if k not in ("policy", "max_fraction") and v is not None})
    return _commented(f"    {name}: {_scalar(shown)}", RULE_COMMENTS.get(name, ""), 62)


def demo_values(data: dict[str, Any]) -> dict[str, Any]:
    """Every section's values: the typed defaults, then DEMO_CHOICES (data: as given)."""
    from bigmodel_core.config.params import Params

    return _merge(Params.model_validate({"data": data}).as_dict(), DEMO_CHOICES)


def render_params(head: str) -> str:
    """params.yaml: `head` (the hand-written part, ending with the data section) and every other section."""
    import yaml

    values = demo_values(yaml.safe_load(head)["data"])
    out = [head.rstrip("\n")]
    for section, keys in COMMENTS.items():
        own = values[section]
        lead = keys.get("#", "")
        out += ["", f"{section}:   # {lead}" if section == "notify" and lead else f"{section}:"]
        for key, comment in keys.items():
            if key == "#":
                if section != "notify":
                    out.append(f"  # {comment}")
                continue
            if "." in key:
                parent, child = key.split(".", 1)
                out.append(_line("    ", child, _scalar(own[parent][child]), comment))
            elif key == "rules":
                out.append("  rules:")
                out += [_rule(name, rule) for name, rule in own["rules"].items()]
            elif isinstance(own[key], dict):
                out.append(_line("  ", key, "", comment))
            else:
                out.append(_line("  ", '"on"' if key == "on" else key, _scalar(own[key]), comment))
    return "\n".join(out) + "\n"


def head_of(text: str) -> str:
    """The hand-written part of a params file: everything above its `clean:` section."""
    return text.split("\nclean:", 1)[0] + "\n"


FILES = ("params.yaml", "bigmodel_core/templates/params.yaml")


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    for name in FILES:
        path = root / name
        path.write_text(render_params(head_of(path.read_text())))
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
