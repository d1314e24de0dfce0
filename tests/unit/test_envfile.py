"""`skiff init`: fresh secrets, kept secrets, versions appended."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skiff.envfile import GENERATORS, VERSIONS_MARKER, parse, write_env
from skiff.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture()
def checkout(tmp_path: Path, root: Path) -> Path:
    for name in (".env.example", "versions.env"):
        shutil.copy(root / name, tmp_path / name)
    return tmp_path


def test_init_fills_every_secret_with_a_fresh_value(checkout: Path) -> None:
    path, generated = write_env(checkout)
    values = parse(path.read_text())
    assert set(generated) == set(GENERATORS)
    assert all(len(values[k]) >= 16 for k in GENERATORS)
    assert len({values[k] for k in GENERATORS}) == len(GENERATORS)
    assert path.stat().st_mode & 0o077 == 0, ".env must be readable by its owner only"


def test_two_checkouts_get_different_secrets(checkout: Path, tmp_path_factory: pytest.TempPathFactory,
                                             root: Path) -> None:
    other = tmp_path_factory.mktemp("other")
    for name in (".env.example", "versions.env"):
        shutil.copy(root / name, other / name)
    a = parse(write_env(checkout)[0].read_text())
    b = parse(write_env(other)[0].read_text())
    assert all(a[k] != b[k] for k in GENERATORS)


def test_rerunning_init_keeps_existing_secrets(checkout: Path) -> None:
    first = parse(write_env(checkout)[0].read_text())
    _, generated = write_env(checkout)
    assert generated == []
    assert parse((checkout / ".env").read_text()) == first


def test_init_refreshes_versions_from_the_versions_file(checkout: Path) -> None:
    write_env(checkout)
    versions = (checkout / "versions.env").read_text().replace("KAFKA_VERSION=", "KAFKA_VERSION=9")
    (checkout / "versions.env").write_text(versions)
    text = write_env(checkout)[0].read_text()
    assert text.count(VERSIONS_MARKER) == 1
    assert parse(text)["KAFKA_VERSION"].startswith("9")


def test_the_generated_env_loads_as_settings(checkout: Path) -> None:
    write_env(checkout)
    settings = Settings.load(checkout)
    assert settings.kafka_cluster_id
    assert settings.topics == ["prediction-requests", "prediction-requests-dlq", "training-requests",
                               "platform-events"]


def test_missing_env_names_the_missing_settings(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in GENERATORS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match=r"POSTGRES_PASSWORD.*skiff init"):
        Settings.load(checkout)
