"""Whole-file writes: atomic, and private from the first byte when they hold secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from skiff import envfile
from skiff.files import PRIVATE, write_atomically

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_file_is_its_owners_only_and_a_public_one_readable(tmp_path: Path) -> None:
    write_atomically(tmp_path / "supervisord.conf", "environment=KEY=\"s3cret\"\n", PRIVATE)
    write_atomically(tmp_path / "dag.py", b"# a DAG\n")
    assert mode(tmp_path / "supervisord.conf") == 0o600
    assert mode(tmp_path / "dag.py") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.py", "supervisord.conf"]


def test_a_rewrite_replaces_the_file_and_takes_the_mode_given(tmp_path: Path) -> None:
    target = tmp_path / "redis.conf"
    target.write_text("old\n")
    target.chmod(0o644)
    write_atomically(target, "requirepass new\n", PRIVATE)
    assert (target.read_text(), mode(target)) == ("requirepass new\n", 0o600)


def test_env_is_private(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    for name in (".env.example", "versions.env"):
        (tmp_path / name).write_text((root / name).read_text())
    path, _ = envfile.write_env(tmp_path)
    assert mode(path) == 0o600
