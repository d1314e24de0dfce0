"""Files the platform writes whole: atomically, and readable by their owner only when they hold secrets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# .env, supervisord.conf (every program's environment), redis.conf, TLS keys.
PRIVATE = 0o600


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Readers (Airflow's DAG processor, Traefik watching its folder) see the old file or
    the new one, never half of one; the file has ``mode`` from its first byte, so a
    secret is never readable by others, not even while it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not the file's own suffix: Airflow must not parse a *.py while it is written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; a public file gets its mode here
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
