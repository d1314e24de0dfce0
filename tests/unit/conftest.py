"""Fixtures for unit tests: the repository's files, parsed, and a container's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skiff.envfile import GENERATORS, parse
from skiff.native.context import Context
from skiff.settings import Settings, find_root


@pytest.fixture(scope="session")
def root() -> Path:
    return find_root(Path(__file__).parent)


@pytest.fixture(scope="session")
def compose_doc(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def versions(root: Path) -> dict[str, str]:
    return parse((root / "versions.env").read_text())


def compose_environment(root: Path, compose_doc: dict[str, Any]) -> dict[str, str]:
    """What a container of docker-compose.yml has in its environment.

    Its env_file, .env as `skiff init` writes it (.env.example with a fresh secret in
    each blank it generates, then versions.env), under the x-hosts variables, which
    Compose's ``environment`` puts over the env_file's.
    """
    example = parse((root / ".env.example").read_text())
    values = {k: v or (GENERATORS[k]() if k in GENERATORS else "") for k, v in example.items()}
    values.update(parse((root / "versions.env").read_text()))
    values.update({k: str(v) for k, v in compose_doc["x-hosts"].items()})
    return values


@pytest.fixture
def compose_ctx(root: Path, compose_doc: dict[str, Any], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Context:
    """The Context of `skiff-run` in a container: settings from that environment alone.

    An image holds no .env (docker/Dockerfile copies none), so neither this checkout's
    .env nor stray variables of the shell running the tests take part.
    """
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in compose_environment(root, compose_doc).items():
        monkeypatch.setenv(name, value)
    ctx = Context(root=root, cache=tmp_path / "compose-cache", state=tmp_path / "compose-state")
    # Context.settings is a cached_property: this is the value it would cache.
    ctx.__dict__["settings"] = Settings()
    return ctx
