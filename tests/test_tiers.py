"""The tiers keep their meaning: every test has exactly one, and a unit test cannot start a process or a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

# `conftest`, not `tests.conftest`: the module pytest loaded, whose hooks ran (a second import is a second module)
from conftest import MODULE_TIER, REPO, TIER_PROBLEMS, TIERS, TierBroken


def test_every_collected_test_has_exactly_one_tier(request):
    # what the collection hook found over every collected test, before `-m` deselected any
    assert request.config.stash[TIER_PROBLEMS] == []
    for item in request.session.items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        assert len(tiers) == 1, f"{item.nodeid}: {tiers}"


def test_the_tier_table_names_every_test_module_and_no_other():
    modules = {p.stem for p in (REPO / "tests").glob("test_*.py")}
    assert sorted(modules - MODULE_TIER.keys()) == []
    assert sorted(MODULE_TIER.keys() - modules) == []
    assert set(MODULE_TIER.values()) <= set(TIERS)


def test_a_unit_test_cannot_start_a_process_or_listen():
    with pytest.raises(TierBroken, match="a unit test starts a subprocess: give it the stage or e2e tier"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(TierBroken, match="a unit test calls os.system"):
        os.system("true")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(TierBroken, match="a unit test listens on a socket"):
            s.listen()


@pytest.mark.stage
def test_the_other_tiers_may(tmp_path):
    assert subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout == "42\n"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
