"""Where native mode keeps things: the install cache, the state, the settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from skiff.settings import Settings, Versions, find_root


@dataclass(frozen=True)
class Context:
    """Everything a service module needs to install, configure and probe itself.

    ``cache`` holds installed components (shared by every checkout, survives
    ``skiff reset``); ``state`` holds this checkout's data, logs and generated
    configuration.
    """

    root: Path
    cache: Path
    state: Path

    @classmethod
    def discover(cls, start: Path | None = None) -> Context:
        root = find_root(start)
        cache = Path(os.environ.get("SKIFF_CACHE", Path.home() / ".cache" / "skiff"))
        state = Path(os.environ.get("SKIFF_STATE", root / ".skiff"))
        return cls(root=root, cache=cache, state=state)

    @cached_property
    def versions(self) -> Versions:
        return Versions.load(self.root)

    @cached_property
    def settings(self) -> Settings:
        return Settings.load(self.root)

    def data_dir(self, service: str) -> Path:
        path = self.state / "data" / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def conf_dir(self, service: str) -> Path:
        path = self.state / "conf" / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def log_dir(self) -> Path:
        path = self.state / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def component(self, name: str, version: str) -> Path:
        """Install folder of one component version in the cache."""
        return self.cache / "components" / f"{name}-{version}"

    def venv(self, image: str) -> Path:
        """The native venv built from ``docker/<image>/requirements.txt``."""
        return self.cache / "venvs" / image

    def compose_file(self, *parts: str) -> Path:
        """A configuration file shared with Compose, under ``compose/``."""
        return self.root / "compose" / Path(*parts)
