"""The image build's seed: Go programs the native install compiled, taken instead of compiling again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skiff import compose
from skiff.native import installing
from skiff.native.context import Context
from skiff.services import s3, traefik

pytestmark = pytest.mark.unit


def never_compile() -> Path:
    raise AssertionError("asked for the Go toolchain: the seed was not used")


def installed(folder: Path, binary: str) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / binary).write_bytes(b"\x7fELF built natively")
    installing.mark_installed(folder)
    return folder


def test_a_seeded_component_is_copied_not_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(tmp_path / "seed" / "components" / "traefik-v9", "traefik")
    monkeypatch.setenv(installing.SEED_ENV, str(tmp_path / "seed"))
    dest = tmp_path / "cache" / "components" / "traefik-v9"
    target = installing.go_binary("traefik", "./cmd/traefik", "v9", dest, "traefik", go=never_compile)
    assert target.read_bytes() == b"\x7fELF built natively"
    assert installing.is_installed(dest)


def test_another_version_in_the_seed_is_not_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(tmp_path / "seed" / "components" / "traefik-v8", "traefik")
    monkeypatch.setenv(installing.SEED_ENV, str(tmp_path / "seed"))
    with pytest.raises(AssertionError, match="seed was not used"):
        installing.go_binary("traefik", "./cmd/traefik", "v9", tmp_path / "components" / "traefik-v9",
                             "traefik", go=never_compile)


def test_seed_builds_offers_what_the_native_install_compiled(tmp_path: Path) -> None:
    shutil.copy(Context.discover().root / "versions.env", tmp_path)
    ctx = Context(root=tmp_path, cache=tmp_path / "cache", state=tmp_path / "state")
    installed(traefik.binary(ctx).parent.parent, "traefik")  # s3's versitygw never installed

    assert compose.seed_builds(ctx) == [traefik.binary(ctx).parent.parent.name]
    seeded = tmp_path / compose.SEED_DIR / "components" / traefik.binary(ctx).parent.parent.name
    assert (seeded / "bin" / "traefik").read_bytes() == b"\x7fELF built natively"
    assert not (tmp_path / compose.SEED_DIR / "components" / s3.binary(ctx).parent.parent.name).exists()
