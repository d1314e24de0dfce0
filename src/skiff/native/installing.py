"""Idempotent installs into the cache: Maven jars and files, Go binaries, Python venvs.

Each install writes a stamp file last, so an interrupted install is redone and
a finished one is skipped. Progress goes to the console through ``step``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
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


def go_binary(component: str, package: str, version: str, dest: Path, binary: str, *,
              go: Callable[[], Path], module: str | None = None, ldflags: str = "") -> Path:
    """Build a Go program from the Go module proxy into ``dest/bin/binary``.

    Without ``module``: ``go install package@version``. Modules whose go.mod has
    ``replace`` directives refuse that (Traefik's does), so for those ``module`` is
    named: its source is fetched with ``go mod download``, copied to a writable
    folder and built there against its own go.mod, ``package`` being the path
    inside the module (``./cmd/traefik``). ``ldflags`` go to the linker (version
    stamps, stripping). ``go`` gives the toolchain's go command (skiff.native.system),
    asked only when there is something to build.
    """
    target = dest / "bin" / binary
    if is_installed(dest) and target.exists():
        return target
    if _from_seed(component, dest, target):
        return target
    what = f"{module or package}@{version}"
    go_cmd = go()
    step(component, f"building {what} from the Go module proxy (a few minutes)")
    dest.mkdir(parents=True, exist_ok=True)
    flags = ["-ldflags", ldflags] if ldflags else []
    if module is None:
        run(component, [str(go_cmd), "install", "-v", *flags, f"{package}@{version}"],
            env={"GOBIN": str(dest / "bin")}, log=dest / "install.log")
    else:
        source = go_module_source(component, module, version, go_cmd)
        build = dest / "src"
        shutil.rmtree(build, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        step(component, f"compiling {package} of {what} (the first build takes minutes)")
        try:
            _writable_copy(source, build)
            # -trimpath: the temporary folder's path stays out of the binary.
            run(component, [str(go_cmd), "build", "-v", "-trimpath", *flags, "-o", str(target), package],
                cwd=build, log=dest / "install.log")
        finally:
            # The sources stay in Go's module cache; the copy is only for the build.
            shutil.rmtree(build, ignore_errors=True)
    mark_installed(dest)
    return target


# An image build mounts here what this machine's native install built already
# (skiff.compose.seed_builds): the same installer's output for the same version, so the
# image need not spend a quarter of an hour compiling Traefik again.
SEED_ENV = "SKIFF_BUILD_SEED"


def _from_seed(component: str, dest: Path, target: Path) -> bool:
    seed = os.environ.get(SEED_ENV)
    if not seed:
        return False
    built = Path(seed) / "components" / dest.name
    if not (is_installed(built) and (built / target.relative_to(dest)).is_file()):
        return False
    step(component, f"copying {dest.name} from the build seed (built natively by the same installer)")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(built, dest, symlinks=True)
    return True


def go_module_source(component: str, module: str, version: str, go: Path) -> Path:
    """The folder of ``module@version`` in Go's module cache (downloaded if needed)."""
    done = subprocess.run([str(go), "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, check=False)
    try:
        info = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        info = {}
    # On failure the JSON carries an "Error" (e.g. the proxy's 403 for a withdrawn version).
    if done.returncode != 0 or "Dir" not in info:
        why = info.get("Error") or done.stderr.strip()[-2000:] or f"exit {done.returncode}"
        raise InstallError(f"{component}: `go mod download {module}@{version}` failed: {why}")
    return Path(info["Dir"])


def _writable_copy(source: Path, dest: Path) -> None:
    # Go's module cache is read-only (files 0444, folders 0555): copy contents, not modes.
    for folder, _dirs, files in os.walk(source):
        here = dest / Path(folder).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(Path(folder) / name, here / name, follow_symlinks=False)


@contextmanager
def install_lock(dest: Path) -> Iterator[None]:
    """One install into ``dest`` at a time: the cache is shared by every checkout, and a
    second `skiff install` must wait rather than run pip or unpack over one in progress."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.with_name(dest.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def venv(component: str, dest: Path, requirements: Path, python: str = sys.executable) -> Path:
    """A venv from one requirements file (the same file the image's Dockerfile uses).

    The stamp records the requirements' content, so editing them reinstalls.
    """
    stamp = dest / ".requirements"
    wanted = requirements.read_text()
    if stamp.is_file() and stamp.read_text() == wanted:
        return dest
    with install_lock(dest):
        # Whoever held the lock may have just installed the same requirements.
        if stamp.is_file() and stamp.read_text() == wanted:
            return dest
        _build_venv(component, dest, requirements, python)
        stamp.write_text(wanted)
    return dest


def _build_venv(component: str, dest: Path, requirements: Path, python: str) -> None:
    step(component, f"installing {requirements.relative_to(requirements.parents[2])} into {dest}")
    if not (dest / "bin" / "python").exists():
        run(component, [python, "-m", "venv", str(dest)])
        run(component, [str(dest / "bin/python"), "-m", "pip", "install", "-q", "-U", "pip"])
    run(component, [str(dest / "bin/python"), "-m", "pip", "install", "-r", str(requirements)],
        log=dest / "install.log")


def download(component: str, url: str, dest: Path, *, sha1_url: str | None = None,
             verify: Callable[[Path], str | None] | None = None) -> Path:
    """Fetch ``url`` to ``dest`` once (kept in the cache), checked against ``sha1_url``.

    Maven Central publishes a ``.sha1`` next to every file; a mismatch removes the
    partial file and fails rather than installing something truncated. ``verify``
    checks the whole file another way (a registry's own checksum) and returns why it
    is wrong, or None.
    """
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    step(component, f"downloading {url}")
    digest = hashlib.sha1(usedforsecurity=False)
    t0 = time.monotonic()
    try:
        with console.status(f"{component}: downloading") as status, httpx.stream(
            "GET", url, follow_redirects=True, timeout=60,
        ) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length", 0))
            done = 0
            with partial.open("wb") as out:
                for chunk in resp.iter_bytes(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    share = f"{100 * done / total:3.0f}% of {total >> 20} MiB" if total else \
                        f"{done >> 20} MiB"
                    status.update(f"[cyan]{component}[/] {time.monotonic() - t0:4.0f}s  {share}")
        if sha1_url:
            expected = httpx.get(sha1_url, follow_redirects=True, timeout=30)
            expected.raise_for_status()
            # The file may hold "<hash>  <name>"; the hash is the first word.
            wanted = expected.text.split()[0].strip().lower()
            if digest.hexdigest() != wanted:
                raise InstallError(f"{component}: {url} has SHA-1 {digest.hexdigest()}, "
                                   f"Maven Central says {wanted}")
        wrong = verify(partial) if verify else None
        if wrong:
            raise InstallError(f"{component}: {url}: {wrong}")
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise InstallError(f"{component}: downloading {url} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(dest)
    return dest


def checkout(component: str, target: Path, root: Path) -> None:
    """The checkout at ``root`` into venv ``target``, editable and --no-deps (its pins stay).

    For venvs whose programs find our code through entry points (Elyra's processor,
    MLflow's app), which live in the installed metadata, not in the source tree: the
    stamp holds pyproject.toml's digest, so editing the entry points reinstalls.
    """
    pyproject = root / "pyproject.toml"
    wanted = f"{root}\n{hashlib.sha256(pyproject.read_bytes()).hexdigest()}\n"
    stamp = target / ".skiff-editable"
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    step(component, f"installing {root} (editable, --no-deps) into {target}")
    run(component, [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "-e", str(root)], log=target / "install-skiff.log")
    stamp.write_text(wanted)
