"""Fixtures for unit tests: the repository's files, parsed, and the Compose schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skiff.envfile import parse
from skiff.settings import find_root


@pytest.fixture(scope="session")
def root() -> Path:
    return find_root(Path(__file__).parent)


@pytest.fixture(scope="session")
def compose_doc(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def versions(root: Path) -> dict[str, str]:
    return parse((root / "versions.env").read_text())
