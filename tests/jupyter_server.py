"""A user's Jupyter server for tests: the workspace venv's Jupyter with Elyra and users' environment.

No hub in front of it: the tests talk to the server's own API (Elyra's pipeline
endpoints) with the server's token. Its S3 keys are its person's own, asked of the
catalog with their token, as the hub does at each spawn.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from skiff import keycloak
from skiff.native.context import Context
from skiff.services import catalog, workspace

READY_PATH = "/elyra/pipeline/runtimes/types"
START_TIMEOUT = 180


def venv_python(ctx: Context, name: str) -> Path:
    python = ctx.venv(name) / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {name} venv at {python}")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JupyterServer:
    def __init__(self, url: str, token: str, home: Path) -> None:
        self.url, self.home = url, home
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"token {token}"}, timeout=600)


def own_s3_keys(stack: Context, user: str, password: str) -> dict[str, str]:
    """``user``'s own S3 keys, from the catalog with their own token (what the hub does)."""
    token = keycloak.user_token(stack.settings, user, password)
    answer = httpx.get(f"{catalog.internal_url(stack.settings)}/api/v1/users/{user}/s3",
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    keys = answer.json()
    return {"S3_ACCESS_KEY": keys["access_key"], "S3_SECRET_KEY": keys["secret_key"]}


@contextmanager
def jupyter_server(stack: Context, base: Path, user: str, password: str,
                   env: dict[str, str]) -> Iterator[JupyterServer]:
    """Run USER's server with a home copied from user-workspace/ under BASE; ``env`` on top."""
    python = venv_python(stack, "workspace")
    workspace.install(stack)  # the runtime configuration and the editable skiff, if not yet there
    home = base / "home"
    shutil.copytree(stack.root / "user-workspace", home)
    (base / "runtime").mkdir()
    port, token = free_port(), secrets.token_hex(16)
    full_env = {"PATH": os.environ["PATH"], "HOME": str(base), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
                **workspace.spawn_env(stack), **own_s3_keys(stack, user, password),
                "SKIFF_USER": user, "JUPYTERHUB_USER": user, **env}
    log_path = base / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "jupyter", "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
             f"--ServerApp.token={token}", f"--ServerApp.root_dir={home}",
             # CI runs as root, which Jupyter refuses unless told.
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            env=full_env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
        server = JupyterServer(f"http://127.0.0.1:{port}", token, home)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter server exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
                try:
                    if server.http.get(READY_PATH, timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter server not up after {START_TIMEOUT} s: "
                                f"{log_path.read_text()[-3000:]}")
                time.sleep(1)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
