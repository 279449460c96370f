"""`dvc plots show` draws its charts without a network: the page's vega, vega-lite and vega-embed are inlined
(bigmodel_core/reporting/plots_page.py), in this repository (.dvc/config) and in a workspace `bigmodel init` makes.

The page is rendered by Debian's headless chromium with every network request refused; the charts must be
there as drawn canvases. The same page made with DVC's own template (scripts from a CDN) draws nothing under
the same conditions, which shows the test really is offline.

    .venv/bin/python -m pytest -q tests/test_plots_page.py
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bigmodel_core.reporting.plots_page import LIBRARIES, TEMPLATE, WORKSPACE_COPY, template_text
from tests.conftest import BIN, REPO, env_for, run_cmd

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium not installed: apt-get install "
                                                              "chromium (.ci/run installs it)")


def test_the_template_inlines_the_versions_dvc_render_asks_for():
    from dvc_render.vega import VegaRenderer

    wanted = dict(re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))
    assert wanted == {name: version for name, (version, _) in LIBRARIES.items()}, "DVC changed its vega versions: " \
        "rebuild the template (python -m bigmodel_core.reporting.plots_page, see its docstring)"
    page = template_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC fills the first; the CDN tags have no place
    assert not re.search(r"<script[^>]*\bsrc=", page)
    scripts = dict(re.findall(r'<script data-library="([^"]+)">\n(.*?)\n</script>', page, flags=re.S))
    assert list(scripts) == [f"{name}@{version}" for name, (version, _) in LIBRARIES.items()]
    for lib, code in scripts.items():  # each is the file the comment names, byte for byte
        assert len(code) > 50_000
        assert f"sha256 {hashlib.sha256(code.encode()).hexdigest()}), npm package {lib}" in page
    assert page.count("Redistribution and use in source and binary forms") == 3  # the three BSD licenses
    assert (REPO / "bigmodel_core" / TEMPLATE).read_text() == page


def dvc_plots_show(root: Path, out: Path) -> str:
    run_cmd([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], root)
    return (out / "index.html").read_text()


def render_offline(page: Path, tmp: Path) -> str:
    """The DOM after chromium ran the page's scripts, with every request to a host refused."""
    profile = tmp / f"profile-{page.parent.name}"
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           "--no-first-run", "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=20000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def charts(dom: str) -> int:
    """Charts vega-embed drew: its canvas renderer's <canvas class="marks">, or an SVG one."""
    return len(re.findall(r'<canvas[^>]*class="marks"', dom)) + len(re.findall(r'<svg[^>]*class="marks"', dom))


@pytest.mark.e2e
@needs_chromium
def test_plots_pages_of_the_repo_and_of_an_init_workspace_draw_offline(tmp_path):
    # this repository: .dvc/config names the template; its committed plots/*.csv are the data
    repo_page = dvc_plots_show(REPO, tmp_path / "repo")
    expected = repo_page.count("vegaEmbed('#")
    assert expected >= 4, "the repository's dvc.yaml declares training, loss, confusion and calibration plots"
    assert "cdn.jsdelivr.net" not in repo_page and "<script data-library=\"vega@5.20.2\">" in repo_page
    dom = render_offline(tmp_path / "repo" / "index.html", tmp_path)
    assert charts(dom) == expected, f"{charts(dom)} of {expected} charts drawn offline"

    # a workspace of one's own: `bigmodel init` puts the template in .dvc/ and names it in .dvc/config
    ws = tmp_path / "own"
    ws.mkdir()
    run_cmd(["git", "init", "-q"], ws)
    out = run_cmd([str(Path(BIN) / "bigmodel"), "init"], ws).stdout
    assert f".dvc/{WORKSPACE_COPY}" in out
    assert (ws / ".dvc" / WORKSPACE_COPY).read_text() == template_text()
    assert f"html_template = {WORKSPACE_COPY}" in (ws / ".dvc/config").read_text()
    shutil.copytree(REPO / "plots", ws / "plots")  # what a run leaves there
    own_page = dvc_plots_show(ws, tmp_path / "own-page")
    assert "cdn.jsdelivr.net" not in own_page and own_page.count("vegaEmbed('#") == expected
    dom = render_offline(tmp_path / "own-page" / "index.html", tmp_path)
    assert charts(dom) == expected

    # the control: DVC's own template loads the libraries from a CDN, and offline it draws nothing
    run_cmd([sys.executable, "-m", "dvc", "config", "--unset", "plots.html_template"], ws)
    cdn_page = dvc_plots_show(ws, tmp_path / "cdn-page")
    assert "https://cdn.jsdelivr.net/npm/vega@5.20.2" in cdn_page
    assert charts(render_offline(tmp_path / "cdn-page" / "index.html", tmp_path)) == 0

    # init again keeps a template the user chose
    run_cmd([sys.executable, "-m", "dvc", "config", "plots.html_template", "mine.html"], ws)
    run_cmd([str(Path(BIN) / "bigmodel"), "init", "--force"], ws, check=True)
    assert "html_template = mine.html" in (ws / ".dvc/config").read_text()
