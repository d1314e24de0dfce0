"""The one way the platform's Flask apps are run natively: gunicorn from the serving venv.

The catalog, the model server and the portal differ only in their app, port, worker
counts and optional config module (docker-compose.yml runs the same command lines).
"""

from __future__ import annotations

from skiff.native.context import Context
from skiff.native.spec import Program


def program(ctx: Context, name: str, *, app: str, port: int, workers: int, threads: int,
            env: dict[str, str], config: str | None = None) -> Program:
    """gunicorn with gthread workers serving ``app`` (``module:factory()``) on bind_host:port."""
    return Program(
        name=name,
        command=[str(ctx.venv("serving") / "bin" / "gunicorn"),
                 *(["--config", f"python:{config}"] if config else []),
                 "--bind", f"{ctx.settings.bind_host}:{port}",
                 "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
                 # gunicorn 25.1+ would open ~/.gunicorn/gunicorn.ctl, one path for every server.
                 "--no-control-socket",
                 app],
        env=env,
        directory=ctx.data_dir(name),
    )
