"""Concurrent installs into the shared cache: one pip run per venv, the other waits."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from skiff.native import installing

pytestmark = pytest.mark.unit


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    monkeypatch.setattr(installing, "_build_venv",
                        lambda component, dest, requirements, python: calls.append(dest))
    return calls


def test_a_venv_installed_while_waiting_for_the_lock_is_not_installed_again(
        tmp_path: Path, builds: list[Path]) -> None:
    dest = tmp_path / "venvs" / "serving"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("flask==3.1.2\n")
    result: list[Path] = []
    waiter = threading.Thread(
        target=lambda: result.append(installing.venv("serving", dest, requirements)))

    with installing.install_lock(dest):
        waiter.start()
        # The other install (the lock's holder) finishes these requirements.
        dest.mkdir(parents=True)
        (dest / ".requirements").write_text(requirements.read_text())
    waiter.join(timeout=30)

    assert result == [dest]
    assert builds == [], "the waiting install ran pip again"


def test_changed_requirements_build_once_and_stamp_the_venv(
        tmp_path: Path, builds: list[Path]) -> None:
    dest = tmp_path / "venvs" / "serving"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("flask==3.1.2\n")
    dest.mkdir(parents=True)
    (dest / ".requirements").write_text("flask==3.0.0\n")

    installing.venv("serving", dest, requirements)
    installing.venv("serving", dest, requirements)

    assert builds == [dest]
    assert (dest / ".requirements").read_text() == "flask==3.1.2\n"
