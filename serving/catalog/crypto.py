"""Data sources' secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with CATALOG_SECRET_KEY."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class Secrets:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as exc:
            raise RuntimeError("catalog: CATALOG_SECRET_KEY is not a Fernet key (32 url-safe "
                               "base64-encoded bytes; `skiff init` generates one)") from exc

    def seal(self, secret: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(secret, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            # A changed CATALOG_SECRET_KEY: the stored secrets cannot be read back.
            raise RuntimeError("a stored secret does not decrypt with CATALOG_SECRET_KEY") from exc
