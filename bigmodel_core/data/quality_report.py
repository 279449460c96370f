"""Which data-quality report is the latest: the last validate that passed, or a later one that stopped."""

from __future__ import annotations

import json
from pathlib import Path


def latest(root: Path) -> tuple[dict, str, str | None] | None:
    """(report, the page to open, a note) of the newest validate run, or None when there is none."""
    ok = Path(root) / "reports/data_quality.json"
    failures = sorted((Path(root) / ".bigmodel/failures").glob("validate-*.json"))
    newest_failure = failures[-1] if failures else None
    if newest_failure is not None and (not ok.exists() or newest_failure.stat().st_mtime > ok.stat().st_mtime):
        page = newest_failure.with_suffix(".html")
        note = f"The last validate run stopped at the data gate ({newest_failure.name}); " + (
            "the last one that passed is in reports/data_quality.json." if ok.exists() else "none passed yet."
        )
        return json.loads(newest_failure.read_text()), str(page.relative_to(root)), note
    if not ok.exists():
        return None
    return json.loads(ok.read_text()), "reports/data_quality.html", None
