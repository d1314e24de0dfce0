"""What the operating system must provide: Debian packages and the Go and Node.js toolchains.

Each service names the Debian packages it needs (``Service.packages``); ``skiff
install`` installs the missing ones when it runs as root and otherwise stops with
the one ``apt-get`` command to run. The images run the same step, so a service's
packages are written once for both modes.

Go (to build Traefik and the S3 gateway) and Node.js (JupyterHub's proxy) are
needed in versions newer than Debian 12 ships: when the machine's own are missing
or too old, they come from the registries the Go and npm tools use themselves, the
Go module proxy (``golang.org/toolchain``) and the npm registry (``node-linux-*``),
at the versions in versions.env.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import httpx

from skiff import archives
from skiff.native import installing
from skiff.native.context import Context

# Started by some of these packages on machines with systemd; ours run from .skiff/.
_SYSTEM_UNITS = ("postgresql", "redis-server", "prometheus", "prometheus-node-exporter")
# For the browser tests (`skiff install --for-tests`), not for the platform.
TEST_PACKAGES = ("chromium", "chromium-driver")


def installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip().endswith(" installed")


def missing(packages: Iterable[str]) -> list[str]:
    """The packages not installed, in the order given, each once."""
    if shutil.which("dpkg-query") is None:
        return []  # not Debian: the services' own checks say what is missing
    seen: list[str] = []
    for package in packages:
        if package not in seen and not installed(package):
            seen.append(package)
    return seen


def apt_command(packages: list[str]) -> str:
    return ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            "--no-install-recommends " + " ".join(packages))


def ensure_packages(packages: Iterable[str]) -> list[str]:
    """Install the missing Debian packages (as root); returns those installed.

    Not root: raises with the command to run, so nothing half-installs.
    """
    need = missing(packages)
    if not need:
        return []
    if os.geteuid() != 0:
        raise installing.InstallError(
            f"Debian packages missing: {' '.join(need)}; run as root:\n  sudo sh -c "
            f"'{apt_command(need)}'\nthen run the same skiff command again")
    installing.step("system", f"installing Debian packages: {' '.join(need)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    installing.run("system", ["apt-get", "update", "-q"], env=env)
    # Without recommends: Java's would bring X11, PostgreSQL's a system cluster's tools.
    installing.run("system", ["apt-get", "install", "-y", "-q", "--no-install-recommends", *need],
                   env=env)
    _stop_system_copies()
    return need


def _stop_system_copies() -> None:
    """Packages that start their own server would hold our ports: stop those copies."""
    if shutil.which("pg_lsclusters"):
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                  check=False).stdout
        for line in clusters.splitlines():
            version, name = line.split()[:2]
            subprocess.run(["pg_ctlcluster", version, name, "stop"], capture_output=True,
                           check=False)
    if shutil.which("systemctl"):
        for unit in _SYSTEM_UNITS:
            subprocess.run(["systemctl", "disable", "--now", unit], capture_output=True,
                           check=False)


def _arch(go_names: bool) -> str:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "amd64" if go_names else "x64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise installing.InstallError(f"no Go or Node.js build for this machine ({machine})")


def _version_of(cmd: list[str]) -> tuple[int, ...] | None:
    if shutil.which(cmd[0]) is None:
        return None
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = done.stdout.strip().removeprefix("go").removeprefix("v")
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return None


def _wanted(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


def go_bin(ctx: Context) -> Path:
    """A ``go`` at least as new as GO_VERSION: the machine's, else one from the module proxy."""
    wanted = ctx.versions.go_version
    found = _version_of(["go", "env", "GOVERSION"])
    if found is not None and found >= _wanted(wanted):
        return Path(shutil.which("go") or "go")
    # Not a component: only builds use it (an image's build keeps it in a cache mount).
    dest = ctx.cache / "toolchains" / f"go-{wanted}"
    go = dest / "bin" / "go"
    if installing.is_installed(dest) and go.exists():
        return go
    module = f"v0.0.1-go{wanted}.linux-{_arch(go_names=True)}"
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0].rstrip("/")
    archive = installing.download("go", f"{proxy}/golang.org/toolchain/@v/{module}.zip",
                                  ctx.cache / "downloads" / f"go-{module}.zip",
                                  verify=lambda z: _go_sum_mismatch(z, proxy, "golang.org/toolchain", module))
    installing.step("go", f"unpacking Go {wanted} into {dest}")
    shutil.rmtree(dest, ignore_errors=True)
    prefix = f"golang.org/toolchain@{module}/"
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = dest / info.filename.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
    # Module zips keep no file modes; the go command marks these executable itself.
    for folder in (dest / "bin", *(dest / "pkg" / "tool").glob("*")):
        for exe in folder.iterdir() if folder.is_dir() else ():
            exe.chmod(0o755)
    installing.mark_installed(dest)
    return go


def node_bin(ctx: Context, *, install: bool = True) -> Path:
    """A ``node`` at least as new as NODE_VERSION's major: the machine's, else from npm.

    ``install=False`` only names it (for a program's command line, which must not fail).
    """
    wanted = ctx.versions.node_version
    found = _version_of(["node", "--version"])
    if found is not None and found[0] >= _wanted(wanted)[0]:
        return Path(shutil.which("node") or "node")
    dest = ctx.component("node", wanted)
    node = dest / "bin" / "node"
    if not install or (installing.is_installed(dest) and node.exists()):
        return node
    package = f"node-linux-{_arch(go_names=False)}"
    archive = installing.download(
        "node", f"{NPM_REGISTRY}/{package}/-/{package}-{wanted}.tgz",
        ctx.cache / "downloads" / f"{package}-{wanted}.tgz",
        verify=lambda tgz: _npm_integrity_mismatch(tgz, package, wanted))
    installing.step("node", f"unpacking Node.js {wanted} into {dest}")
    _untar_package(archive, dest)
    node.chmod(0o755)
    installing.mark_installed(dest)
    return node


def npm_cli(ctx: Context) -> list[str]:
    """How to run npm: the machine's, else npm's own package run by :func:`node_bin`."""
    if shutil.which("npm") and shutil.which("node") and node_bin(ctx) == Path(
            shutil.which("node") or ""):
        return ["npm"]
    wanted = ctx.versions.npm_version
    dest = ctx.component("npm", wanted)
    if not installing.is_installed(dest):
        archive = installing.download(
            "npm", f"{NPM_REGISTRY}/npm/-/npm-{wanted}.tgz", ctx.cache / "downloads" / f"npm-{wanted}.tgz",
            verify=lambda tgz: _npm_integrity_mismatch(tgz, "npm", wanted))
        _untar_package(archive, dest)
        installing.mark_installed(dest)
    return [str(node_bin(ctx)), str(dest / "bin" / "npm-cli.js")]


NPM_REGISTRY = "https://registry.npmjs.org"


def _npm_integrity_mismatch(tarball: Path, package: str, version: str) -> str | None:
    """Why ``tarball`` is not the one the npm registry published (its ``dist.integrity``)."""
    dist = httpx.get(f"{NPM_REGISTRY}/{package}/{version}", timeout=30).raise_for_status().json()["dist"]
    algorithm, _, expected = dist["integrity"].partition("-")
    got = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    return None if got == expected else f"{algorithm} {got}, the registry says {expected}"


def _go_sum_mismatch(archive: Path, proxy: str, module: str, version: str) -> str | None:
    """Why a module zip does not match Go's checksum database (asked through the proxy)."""
    lookup = httpx.get(f"{proxy}/sumdb/sum.golang.org/lookup/{module}@{version}", timeout=30)
    lookup.raise_for_status()
    wanted = next((line.split()[2] for line in lookup.text.splitlines()
                   if line.split()[:2] == [module, version]), None)
    if wanted is None:
        return f"the checksum database has no line for {module}@{version}"
    got = go_zip_hash(archive)
    return None if got == wanted else f"hash {got}, the checksum database says {wanted}"


def go_zip_hash(archive: Path) -> str:
    """The ``h1:`` hash Go records for a module zip (golang.org/x/mod's dirhash.HashZip):
    SHA-256 of the "<sha256 of file>  <name>" lines, sorted by name."""
    with zipfile.ZipFile(archive) as zf:
        lines = [f"{hashlib.sha256(zf.read(name)).hexdigest()}  {name}\n"
                 for name in sorted(zf.namelist()) if not name.endswith("/")]
    return "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()


def _untar_package(archive: Path, dest: Path) -> None:
    """An npm package tarball (everything under ``package/``) unpacked into ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    staging = dest.with_name(dest.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tf:
        archives.extract(tf, staging)
    (staging / "package").rename(dest)
    staging.rmdir()
