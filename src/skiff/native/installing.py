"""Idempotent installs into the cache: Maven jars, Go binaries, Python venvs.

Each install writes a stamp file last, so an interrupted install is redone and
a finished one is skipped. Progress goes to the console through ``step``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


class InstallError(RuntimeError):
    """An install step failed; the message names the component and the command."""


def step(component: str, message: str) -> None:
    console.print(f"[bold cyan]{component:>10}[/] {message}")


def is_installed(dest: Path) -> bool:
    return (dest / ".installed").is_file()


def mark_installed(dest: Path) -> None:
    (dest / ".installed").write_text("ok\n")


def run(component: str, cmd: list[str], *, cwd: Path | None = None,
        env: dict[str, str] | None = None, log: Path | None = None) -> None:
    """Run an install command, showing its latest output line and the time spent.

    On failure, raise with the tail of its output; the whole output goes to ``log``.
    """
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise InstallError(f"{component}: `{cmd[0]}` is not installed (needed to install it)")
    lines: list[str] = []
    t0 = time.monotonic()
    with console.status(f"{component}: {Path(cmd[0]).name}") as status, subprocess.Popen(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            status.update(f"[cyan]{component}[/] {time.monotonic() - t0:4.0f}s  "
                          f"[dim]{escape(line.strip()[:90])}[/]")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(lines) + "\n")
    if proc.returncode != 0:
        tail = "\n".join(lines[-25:])
        raise InstallError(f"{component}: `{' '.join(cmd)}` failed ({proc.returncode})\n{tail}")


def maven_jars(component: str, pom: Path, dest: Path, properties: dict[str, str]) -> Path:
    """Resolve a component's runtime jars from Maven Central into ``dest/libs``.

    ``pom`` lists the component as a dependency with its version as a property,
    so the version still comes from versions.env.
    """
    if is_installed(dest):
        return dest / "libs"
    step(component, f"resolving jars from Maven Central into {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    props = [f"-D{k}={v}" for k, v in properties.items()]
    run(component, [
        "mvn", "-B", "-f", str(pom), *props,
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={dest / 'libs'}",
    ], log=dest / "install.log")
    mark_installed(dest)
    return dest / "libs"


def go_binary(component: str, package: str, version: str, dest: Path, binary: str) -> Path:
    """``go install package@version`` with GOBIN in the cache."""
    target = dest / "bin" / binary
    if is_installed(dest) and target.exists():
        return target
    step(component, f"building {package}@{version} from the Go module proxy (a few minutes)")
    dest.mkdir(parents=True, exist_ok=True)
    run(component, ["go", "install", "-v", f"{package}@{version}"],
        env={"GOBIN": str(dest / "bin")}, log=dest / "install.log")
    mark_installed(dest)
    return target


def venv(component: str, dest: Path, requirements: Path, python: str = sys.executable) -> Path:
    """A venv from one requirements file (the same file the image's Dockerfile uses).

    The stamp records the requirements' content, so editing them reinstalls.
    """
    stamp = dest / ".requirements"
    wanted = requirements.read_text()
    if stamp.is_file() and stamp.read_text() == wanted:
        return dest
    step(component, f"installing {requirements.relative_to(requirements.parents[2])} into {dest}")
    if not (dest / "bin" / "python").exists():
        run(component, [python, "-m", "venv", str(dest)])
        run(component, [str(dest / "bin/python"), "-m", "pip", "install", "-q", "-U", "pip"])
    run(component, [str(dest / "bin/python"), "-m", "pip", "install", "-r", str(requirements)],
        log=dest / "install.log")
    stamp.write_text(wanted)
    return dest
