"""The page `dvc plots show` and `dvc plots diff` write, drawable offline.

DVC's renderer (dvc-render) puts `<script src="https://cdn.jsdelivr.net/npm/vega@...">` tags into its page, so
without a network the page is blank. bigmodel ships an HTML template (templates/dvc_plots.html) with the same
three libraries inlined, at the versions dvc-render asks for; the repository's .dvc/config names it
(plots.html_template) and `bigmodel init` copies it into a workspace's .dvc/ and names it there.

dvc-render fills a template by replacing `{plot_divs}` (required), `{scripts}` and `{refresh_tag}`. This one has
no `{scripts}`: the CDN tags are never inserted.

To build the template again (after a DVC upgrade that changes the versions; a test compares them):

    cd /tmp && npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    .venv/bin/python -m bigmodel_core.reporting.plots_page /tmp     # reads the three .tgz files, writes the template
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from importlib import resources
from pathlib import Path

from bigmodel_core.errors import ConfigError

#: the npm packages inlined, at the versions dvc-render's VegaRenderer.SCRIPTS loads; the file of each package
LIBRARIES = {
    "vega": ("5.20.2", "build/vega.min.js"),
    "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.18.2", "build/vega-embed.min.js"),
}
TEMPLATE = "templates/dvc_plots.html"
#: the name of the copy `bigmodel init` puts in a workspace's .dvc/ (DVC reads a relative path from there)
WORKSPACE_COPY = "plots_template.html"


def template_text() -> str:
    return resources.files("bigmodel_core").joinpath(TEMPLATE).read_text(encoding="utf8")


def _read_member(tar: tarfile.TarFile, tgz: Path, path: str) -> str:
    f = tar.extractfile(path)  # KeyError when it is missing, None when it is not a file
    if f is None:
        raise ConfigError(f"{tgz}: {path} is not a file")
    return f.read().decode("utf8")


def build(tarballs: Path) -> str:
    """The template's text from the npm tarballs in `tarballs` (`npm pack <name>@<version>` names them
    <name>-<version>.tgz), each library in a <script> of its own with its license and sha256 above it."""
    parts, notices = [], []
    for name, (version, member) in LIBRARIES.items():
        tgz = Path(tarballs) / f"{name}-{version}.tgz"
        if not tgz.is_file():
            raise ConfigError(f"{tgz}: not found; run `npm pack {name}@{version}` in {tarballs} first")
        with tarfile.open(tgz) as tar:
            code, license_text = (_read_member(tar, tgz, path) for path in (f"package/{member}", "package/LICENSE"))
        for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
            if bad in code:  # the page would break, or dvc-render would fill it in
                raise ConfigError(f"{tgz}: {member} contains {bad!r}; it cannot be inlined as it is")
        digest = hashlib.sha256(code.encode("utf8")).hexdigest()
        notices.append(
            f"{name} {version} ({member}, sha256 {digest}), npm package {name}@{version}:\n\n"
            + license_text.strip().replace("--", "- -")
        )
        parts.append(f'<script data-library="{name}@{version}">\n{code}\n</script>')
    notice = "\n\n".join(notices)
    return (
        "<!DOCTYPE html>\n"
        "<!-- bigmodel's template for `dvc plots show` / `dvc plots diff` "
        "(see bigmodel_core/reporting/plots_page.py):\n"
        "     DVC's page with vega, vega-lite and vega-embed inlined, so it draws without a network.\n\n"
        f"{notice}\n-->\n"
        '<html>\n<head>\n    {refresh_tag}\n    <meta charset="utf-8">\n    <title>DVC Plot</title>\n'
        + "\n".join(parts)
        + "\n    <style>\n        table {\n            border-spacing: 15px;\n        }\n    </style>\n"
        "</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n"
    )


def install(root: Path) -> str | None:
    """In a DVC workspace: copy the template to .dvc/ and set plots.html_template to it, unless the workspace
    names a template of its own already. Returns a line saying what was done, or None."""
    dvc_dir = Path(root) / ".dvc"
    current = subprocess.run(
        [sys.executable, "-m", "dvc", "config", "plots.html_template"], cwd=root, capture_output=True, text=True
    )
    if current.returncode == 0 and current.stdout.strip() not in ("", WORKSPACE_COPY):
        return None
    (dvc_dir / WORKSPACE_COPY).write_text(template_text(), encoding="utf8")
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "config", "plots.html_template", WORKSPACE_COPY],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ConfigError(
            f"dvc config plots.html_template failed in {root}: {(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return (
        f"wrote .dvc/{WORKSPACE_COPY} and set it as DVC's plots template (`dvc plots show` draws offline: vega inlined)"
    )


if __name__ == "__main__":
    target = Path(__file__).parents[1] / TEMPLATE
    target.write_text(build(Path(sys.argv[1] if len(sys.argv) > 1 else ".")), encoding="utf8")
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
