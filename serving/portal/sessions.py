"""Server-side sessions in SQLite, shared by the portal's gunicorn workers.

The browser holds only a random token (cookie); the table holds an HMAC of it,
so a copy of the database opens no session. Each row carries Keycloak's session
id (``sid``): a back-channel logout names that sid and every row with it goes.
Sessions end at the first of: idle for ``idle`` seconds, ``max_age`` after login,
logout here, logout in Keycloak, a refresh Keycloak refuses.

Each row also keeps the session's Keycloak tokens (access + refresh), so the
console can call the platform's APIs as the user and forward-auth can hand
Traefik a bearer token. They are encrypted (Fernet, its key derived with HKDF
from the cookie secret): a copy of the database alone opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as BadCiphertext
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    sid        TEXT,
    sub        TEXT NOT NULL,
    username   TEXT NOT NULL,
    email      TEXT NOT NULL DEFAULT '',
    roles      TEXT NOT NULL DEFAULT '[]',
    groups     TEXT NOT NULL DEFAULT '[]',
    id_token   TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL,
    last_seen  REAL NOT NULL,
    expires    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_sid ON sessions (sid);
-- (tokens: added below for databases made before the column existed)
CREATE INDEX IF NOT EXISTS sessions_sub ON sessions (sub);
"""
# Writing last_seen on every forward-auth check would make each MLflow request a
# write; once a minute keeps the idle timeout right to the minute.
TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class Tokens:
    """A session's Keycloak tokens and when they expire (epoch seconds)."""

    access: str = field(repr=False)
    refresh: str = field(repr=False)
    access_expires: float
    refresh_expires: float

    def dump(self) -> bytes:
        return json.dumps({"a": self.access, "r": self.refresh, "ae": self.access_expires,
                           "re": self.refresh_expires}).encode()

    @classmethod
    def load(cls, raw: bytes) -> Tokens:
        doc = json.loads(raw)
        return cls(doc["a"], doc["r"], float(doc["ae"]), float(doc["re"]))


def token_cipher(secret: str) -> Fernet:
    """The Fernet key for stored tokens: HKDF of the cookie secret, its own ``info``
    so it is independent of the cookie HMAC key."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"skiff-portal-session-tokens").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@dataclass(frozen=True)
class Identity:
    """Who is signed in: what the landing page shows and forward-auth passes on."""

    sub: str
    username: str
    email: str = ""
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    sid: str | None = None
    id_token: str = field(default="", repr=False)
    # Only between the login and the catalog's call at login: sessions never store it.
    access_token: str = field(default="", repr=False, compare=False)


class SessionStore:
    def __init__(self, path: Path, secret: str, idle: float, max_age: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._key = hashlib.sha256(b"skiff-portal-session:" + secret.encode()).digest()
        self._cipher = token_cipher(secret)
        self.idle = idle
        self.max_age = max_age
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created owner-only: it holds ID tokens (the logout hint).
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            if "tokens" not in columns:
                db.execute("ALTER TABLE sessions ADD COLUMN tokens BLOB")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: safe across gunicorn's threads and workers.
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def _hash(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def _seal(self, tokens: Tokens | None) -> bytes | None:
        return self._cipher.encrypt(tokens.dump()) if tokens is not None else None

    def create(self, who: Identity, tokens: Tokens | None = None) -> str:
        """Store a session for ``who``; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires < ? OR last_seen < ?",
                       (now, now - self.idle))
            db.execute(
                "INSERT INTO sessions (token_hash, sid, sub, username, email, roles, groups, id_token,"
                " created, last_seen, expires, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._hash(token), who.sid, who.sub, who.username, who.email,
                 json.dumps(list(who.roles)), json.dumps(list(who.groups)), who.id_token,
                 now, now, now + self.max_age, self._seal(tokens)))
        return token

    def get(self, token: str | None) -> Identity | None:
        """The session's identity, or None if unknown, expired or idle too long."""
        if not token:
            return None
        now = self.clock()
        key = self._hash(token)
        with self._db() as db:
            row = db.execute(
                "SELECT sid, sub, username, email, roles, groups, id_token, last_seen, expires"
                " FROM sessions WHERE token_hash = ?", (key,)).fetchone()
            if row is None:
                return None
            sid, sub, username, email, roles, groups, id_token, last_seen, expires = row
            if now >= expires or now - last_seen >= self.idle:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
                return None
            if now - last_seen >= TOUCH_EVERY:
                db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, key))
        return Identity(sub=sub, username=username, email=email, roles=tuple(json.loads(roles)),
                        groups=tuple(json.loads(groups)), sid=sid, id_token=id_token)

    def tokens(self, token: str | None) -> Tokens | None:
        """The session's Keycloak tokens (None: no such session, or none stored)."""
        if not token:
            return None
        with self._db() as db:
            row = db.execute("SELECT tokens FROM sessions WHERE token_hash = ?",
                             (self._hash(token),)).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return Tokens.load(self._cipher.decrypt(row[0]))
        except (BadCiphertext, ValueError, KeyError):
            # Sealed under another cookie secret (it was changed): as good as none.
            return None

    def set_tokens(self, token: str, tokens: Tokens) -> None:
        with self._db() as db:
            db.execute("UPDATE sessions SET tokens = ? WHERE token_hash = ?",
                       (self._seal(tokens), self._hash(token)))

    def delete(self, token: str | None) -> None:
        if token:
            with self._db() as db:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (self._hash(token),))

    def end_keycloak_session(self, sid: str | None, sub: str | None) -> int:
        """Drop the sessions of a Keycloak session (or, without sid, of a user); returns how many."""
        with self._db() as db:
            if sid:
                return db.execute("DELETE FROM sessions WHERE sid = ?", (sid,)).rowcount
            if sub:
                return db.execute("DELETE FROM sessions WHERE sub = ?", (sub,)).rowcount
        return 0

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
