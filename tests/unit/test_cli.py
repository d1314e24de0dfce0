"""The `skiff` command where no service is needed: reset, mode selection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skiff import compose

pytestmark = pytest.mark.unit


def skiff(*args: str, state: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skiff.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SKIFF_STATE": str(state)}, check=False)


def test_reset_asks_first_and_keeps_state_when_not_confirmed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("precious")
    done = skiff("reset", state=tmp_path, stdin="n\n")
    assert done.returncode == 1 and "Aborted" in done.stderr
    assert (tmp_path / "data" / "keep.txt").read_text() == "precious"


def test_reset_with_yes_wipes_the_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "data").mkdir(parents=True)
    (state / "data" / "gone.txt").write_text("x")
    done = skiff("reset", "--yes", state=state)
    assert done.returncode == 0, done.stderr
    assert not state.exists()


@pytest.mark.skipif(compose.engine_answers(), reason="a Docker engine answers here")
def test_compose_mode_without_an_engine_says_how_to_run_natively(tmp_path: Path) -> None:
    done = skiff("up", "--compose", state=tmp_path)
    assert done.returncode == 1
    assert "no Docker engine answers" in done.stderr and "skiff up --native" in done.stderr
