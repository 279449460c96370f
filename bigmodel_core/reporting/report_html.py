"""Small self-contained HTML pages for the MLflow UI: the data-quality report and the run card.

The MLflow artifact viewer shows HTML and images inline but JSON only as raw text, so the reports a
person reads after a run (above all after a gate stopped it) are rendered here: inline CSS, every value
escaped, the run card's Markdown through markdown-it-py.
"""

from __future__ import annotations

import html
from collections.abc import Collection

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#1f2328;max-width:70em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.4em;border-bottom:1px solid #d0d7de}
h3{font-size:1.05em}table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f6f8fa}figure{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}\
figcaption{font-weight:600;font-size:.92em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#656d76}
code,pre{background:#f6f8fa;border-radius:4px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
code{padding:.1em .3em}pre{padding:.7em;overflow-x:auto}
"""


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _cell(value, numeric: bool = False) -> str:
    if value is None:
        text = '<span class="muted">–</span>'
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = html.escape(str(value))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def table(header: list[str], rows: list[list], numeric: Collection[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v, i in numeric) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bars(title: str, labels: list[str], values: list[float], width: int = 520) -> str:
    """A horizontal bar chart as inline SVG (no script, no external file), one bar per label."""
    row, left = 22, 170
    top = max([float(v) for v in values if v is not None] or [0.0]) or 1.0
    height = row * len(labels) + 8
    out = [
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=False)):
        v = float(value or 0)
        w = (width - left - 80) * v / top
        y = 4 + i * row
        shown = f"{v:,.0f}" if v == int(v) else f"{v:.3g}"
        out.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{html.escape(str(label)[:26])}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="#4c78a8"/>'
            f'<text x="{left + w + 5:.1f}" y="{y + 15}" font-size="12">{shown}</text>'
        )
    out.append("</svg></figure>")
    return "".join(out)


# --------------------------------------------------------------------------- data quality
def data_quality_html(report: dict, quarantine=None, note: str | None = None, max_quarantine_rows: int = 50) -> str:
    """The validate stage's report (reports/data_quality.json) as a page: verdict, failed rules, every rule's
    counts and examples, class counts, and a sample of the quarantined rows (a DataFrame with rule and reason)."""
    passed = bool(report.get("passed", not report.get("failures")))
    verdict = '<span class="ok">PASSED</span>' if passed else '<span class="bad">FAILED</span>'
    parts = [f"<h1>Data quality: {verdict}</h1>"]
    if note:
        parts.append(f'<p class="muted">{html.escape(note)}</p>')
    parts.append(
        table(
            ["rows in", "rows kept", "rows quarantined", "quarantine fraction"],
            [
                [
                    report.get("rows_in"),
                    report.get("rows_out"),
                    report.get("rows_quarantined"),
                    _pct(report.get("quarantine_fraction")),
                ]
            ],
            numeric={0, 1, 2, 3},
        )
    )
    failures = report.get("failures") or []
    if failures:
        items = "".join(f"<li>{html.escape(str(f))}</li>" for f in failures)
        parts.append(f'<h2>Why the gate closed</h2><ul class="bad">{items}</ul>')
    charts = []
    if report.get("class_counts"):
        charts.append(
            bars("Rows per class (kept)", list(report["class_counts"]), list(report["class_counts"].values()))
        )
    prof = report.get("profile") or {}
    if prof.get("length_hist"):
        charts.append(bars("Text length in words (kept rows)", prof["length_bins"], prof["length_hist"]))
    hit = {k: r.get("rows", 0) for k, r in (report.get("rules") or {}).items()}
    if hit:
        charts.append(bars("Rows per rule", list(hit), list(hit.values())))
    if charts:
        parts.append("<h2>Charts</h2>" + "".join(charts))
    rules = report.get("rules") or {}
    if rules:
        rows = [
            [name, r.get("policy"), r.get("rows"), _pct(r.get("fraction")), _pct(r.get("max_fraction"))]
            for name, r in rules.items()
        ]
        parts.append(
            "<h2>Rules</h2>" + table(["rule", "policy", "rows", "fraction", "max fraction"], rows, numeric={2, 3, 4})
        )
        for name, r in rules.items():
            examples = r.get("examples") or []
            if name == "label_noise" and (r.get("checked") or r.get("note")):
                kappa = (
                    ""
                    if r.get("model_kappa") is None
                    else f", agreeing with the labels at Cohen's kappa {r['model_kappa']}"
                )
                said = (
                    f"label_noise: {r.get('checked')} row(s) checked by a {r.get('folds')}-fold cross-validated "
                    f"{r.get('model')}{kappa}. {r.get('note') or ''}"
                )
                parts.append(f"<p>{html.escape(said)}</p>")
            if examples:
                reasons = any("reason" in e for e in examples)
                parts.append(
                    f"<h3>{html.escape(name)}: examples</h3>"
                    + table(
                        ["source file", "row", "text", "label"] + (["why"] if reasons else []),
                        [
                            [e.get("source_file"), e.get("source_row"), e.get("text"), e.get("label")]
                            + ([e.get("reason")] if reasons else [])
                            for e in examples
                        ],
                        numeric={1},
                    )
                )
    fixed = report.get("fixed_test") or {}
    if fixed.get("rows"):
        kept = fixed.get("kept_despite") or {}
        said = (
            f"{fixed['rows']:,} rows of a fixed test split ({fixed.get('policy')}); {fixed.get('set_aside', 0):,} set "
            "aside because they cannot be scored (no text, no label or a label outside data.labels)."
        )
        parts.append(
            "<h2>Fixed test rows</h2>"
            + f"<p>{html.escape(said)}</p>"
            + (
                table(["rule they break, kept as given", "rows"], [[k, v] for k, v in kept.items()], numeric={1})
                if kept
                else ""
            )
        )
    pairs = (rules.get("near_duplicate") or {}).get("pairs") or []
    if pairs:
        parts.append(
            f"<h2>Near-duplicate pairs (Jaccard &ge; {rules['near_duplicate'].get('min_jaccard')})</h2>"
            + table(
                ["Jaccard", "file", "row", "text", "file", "row", "text"],
                [
                    [
                        pr["jaccard"],
                        pr["a"]["source_file"],
                        pr["a"]["source_row"],
                        pr["a"]["text"],
                        pr["b"]["source_file"],
                        pr["b"]["source_row"],
                        pr["b"]["text"],
                    ]
                    for pr in pairs
                ],
                numeric={0, 2, 5},
            )
        )
    drift = report.get("drift") or {}
    if drift.get("checked"):
        t = drift.get("thresholds") or {}
        parts.append(
            f"<h2>Drift against champion v{html.escape(str(drift.get('reference_version')))}'s data</h2>"
            + table(
                ["measure", "value", "threshold"],
                [
                    [
                        "label priors, L-infinity (" + str(drift.get("label_shift_class")) + ")",
                        drift.get("label_shift"),
                        t.get("max_label_shift"),
                    ],
                    ["word lengths, Jensen-Shannon", drift.get("length_js"), t.get("max_length_js")],
                    ["out-of-vocabulary rise", drift.get("oov_increase"), t.get("max_oov_increase")],
                ],
                numeric={1, 2},
            )
            + table(
                ["class", "champion's share", "this run's share"],
                [[c, v[0], v[1]] for c, v in (drift.get("label_priors") or {}).items()],
                numeric={1, 2},
            )
        )
    elif drift:
        parts.append(f'<p class="muted">Drift not checked: {html.escape(str(drift.get("reason")))}</p>')
    warnings = report.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
        parts.append(f"<h2>Warnings (the run went on)</h2><ul>{items}</ul>")
    dataset = report.get("dataset_rules") or {}
    if dataset:
        rows = [
            [
                name,
                r.get("policy"),
                r.get("value"),
                r.get("threshold"),
                "passed" if r.get("passed") else "broken",
                r.get("finding") or "",
            ]
            for name, r in dataset.items()
        ]
        parts.append(
            "<h2>Dataset rules</h2>"
            + table(["rule", "policy", "value", "threshold", "verdict", "finding"], rows, numeric={2, 3})
        )
    counts = report.get("class_counts") or {}
    if counts:
        parts.append(
            "<h2>Rows per class (kept)</h2>"
            + table(["class", "rows"], [[k, v] for k, v in counts.items()], numeric={1})
        )
    if quarantine is not None and len(quarantine):
        cols = [c for c in ("rule", "reason", "source_file", "source_row", "text", "label") if c in quarantine.columns]
        sample = quarantine[cols].head(max_quarantine_rows)
        total = int(report.get("rows_quarantined", len(quarantine)))  # quarantine may be a sample
        more = total - len(sample)
        rows = [[_py(v) for v in r] for r in sample.itertuples(index=False, name=None)]
        parts.append(
            f"<h2>Quarantined rows ({total:,})</h2>"
            + table(cols, rows, numeric={3})
            + (f'<p class="muted">… and {more:,} more.</p>' if more > 0 else "")
        )
    return page("Data quality", "\n".join(parts))


def _pct(x) -> str | None:
    return None if x is None else f"{float(x):.2%}"


def _py(v):
    """numpy scalars and pandas NA as plain values."""
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


# --------------------------------------------------------------------------- markdown (the run card)
_LISTS = {"bullet_list_open", "bullet_list_close", "ordered_list_open", "ordered_list_close"}


def _fence(renderer, tokens, idx, options, env) -> str:
    """A code block as one <pre> of its escaped text (no <code> inside, no trailing newline)."""
    return f"<pre>{html.escape(tokens[idx].content.rstrip(chr(10)))}</pre>\n"


def markdown_html(markdown: str, title: str = "Run card") -> str:
    """A run card's Markdown as a page (markdown-it-py, CommonMark with pipe tables; raw HTML in the text is
    shown escaped, not passed through). Lists are written without line breaks between their items."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    tokens = md.parse(markdown)
    for token in tokens:
        outermost_end = token.level == 0 and token.nesting < 0  # keeps its line break
        if token.type.startswith("list_item") or (token.type in _LISTS and not outermost_end):
            token.block = False
    return page(title, md.renderer.render(tokens, md.options, {}))


def data_quality_markdown(report: dict, where: str | None = None) -> str:
    """The data-quality summary in a few lines of markdown: the Prefect artifact and `bigmodel report data`."""
    verdict = "passed" if report.get("passed", not report.get("failures")) else "FAILED"
    lines = [
        f"# Data quality: {verdict}",
        "",
        f"{report.get('rows_in', 0):,} rows in, {report.get('rows_out', 0):,} kept, "
        f"{report.get('rows_quarantined', 0):,} quarantined ({float(report.get('quarantine_fraction', 0)):.1%}).",
        "",
        "| rule | policy | rows | fraction |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, r in (report.get("rules") or {}).items():
        lines.append(f"| {name} | {r.get('policy')} | {r.get('rows', 0):,} | {float(r.get('fraction', 0)):.2%} |")
    for name, r in (report.get("dataset_rules") or {}).items():
        lines.append(f"| {name} | {r.get('policy')} | {'ok' if r.get('passed') else 'broken'} | |")
    if report.get("class_counts"):
        lines += ["", "Rows per class: " + ", ".join(f"{k} {v:,}" for k, v in report["class_counts"].items()) + "."]
    fixed = report.get("fixed_test") or {}
    if fixed.get("rows"):
        kept = ", ".join(f"{k} {v:,}" for k, v in (fixed.get("kept_despite") or {}).items())
        lines += [
            "",
            f"Fixed test rows: {fixed['rows']:,} ({fixed.get('policy')}), {fixed.get('set_aside', 0):,} set aside "
            "(no text, no label or an unknown label)" + (f"; kept as given despite {kept}" if kept else "") + ".",
        ]
    drift = report.get("drift") or {}
    if drift.get("checked"):
        lines += [
            "",
            f"Drift against champion v{drift.get('reference_version')}: label shift {drift.get('label_shift'):.3f}"
            f" (max {drift['thresholds']['max_label_shift']:g}), length JS {drift.get('length_js'):.3f} (max "
            f"{drift['thresholds']['max_length_js']:g}), OOV rise {drift.get('oov_increase'):+.3f} (max "
            f"{drift['thresholds']['max_oov_increase']:g}).",
        ]
    elif drift:
        lines += ["", f"Drift not checked: {drift.get('reason')}."]
    pairs = (report.get("rules") or {}).get("near_duplicate", {}).get("pairs") or []
    if pairs:
        pr = pairs[0]
        lines += [
            "",
            f"Near-duplicate pairs: {len(pairs)} shown in the report, e.g. {pr['a']['source_file']} row "
            f"{pr['a']['source_row']} ~ {pr['b']['source_file']} row {pr['b']['source_row']} "
            f"(Jaccard {pr['jaccard']}).",
        ]
    lines += [f"- gate: {f}" for f in report.get("failures") or []]
    lines += [f"- warning: {w}" for w in report.get("warnings") or []]
    if where:
        lines += ["", f"Full report: {where}"]
    return "\n".join(lines) + "\n"
