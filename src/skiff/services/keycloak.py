"""Keycloak: single sign-on for every UI and API (realm ``skiff``, docs/decisions/0006).

Natively it is the ``keycloak-quarkus-dist`` tarball from Maven Central, run on
Java 17+ with its data in PostgreSQL (database ``keycloak``). The tarball is
unpacked once into the cache and *built* there once (``kc.sh build``: the
build-time options below are the same for every checkout); each checkout then
gets a small home of its own in the state folder (``bin/kc.sh``, ``data/``, the
rest linked to the cache) because Keycloak reads its realm imports from
``<home>/data/import`` and writes temporary files under ``<home>/data``.

Hostname v2: ``hostname`` is the public URL + ``/auth`` so every token's issuer is
the address people use, and ``hostname-backchannel-dynamic`` lets the platform's
services call the token endpoint, JWKS and admin API at the internal address.
The realm file (compose/keycloak/realm-skiff.json) carries ``${VAR}``
placeholders that Keycloak resolves from the environment at import; the import
is skipped once the realm exists, so ``bootstrap`` keeps client secrets in step
with .env afterwards and creates the platform's first user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

import httpx

from skiff import archives
from skiff.native import installing
from skiff.native.context import Context
from skiff.native.java import JAVA_PACKAGES, java_command, require_java
from skiff.native.spec import NotReady, Program, Service

NAME = "keycloak"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
REALM_FILE = "realm-skiff.json"
# The audience the devices' client adds to its tokens; the model server requires it.
MODEL_API_AUDIENCE = "model-api"
RELATIVE_PATH = "/auth"
# Build-time options: baked into the cached install by `kc.sh build`, so start
# --optimized skips the minute-long re-augmentation.
BUILD_OPTIONS = (
    "--db=postgres",
    "--health-enabled=true",
    "--metrics-enabled=true",
    f"--http-relative-path={RELATIVE_PATH}",
)
# kc.sh's own default outside containers is -Xmx512m; the whole stack shares
# the machine, and one realm with a handful of users fits well in this.
HEAP = "-Xms64m -Xmx512m"
# The parts of the cached install a checkout's home links to (bin/ is copied:
# kc.sh finds its home from its own resolved path).
LINKED = ("lib", "conf", "themes", "providers", "version.txt")


def tarball_url(version: str) -> str:
    return (f"{MAVEN_CENTRAL}/org/keycloak/keycloak-quarkus-dist/{version}/"
            f"keycloak-quarkus-dist-{version}.tar.gz")


def dist(ctx: Context) -> Path:
    """The unpacked and built distribution in the cache, one per set of build options.

    `kc.sh build` rewrites lib/quarkus in place; a server running from it would
    break, so other options get a folder of their own instead.
    """
    key = hashlib.sha256(" ".join(BUILD_OPTIONS).encode()).hexdigest()[:8]
    return ctx.component(NAME, f"{ctx.versions.keycloak_version}-{key}")


def home(ctx: Context) -> Path:
    """This checkout's Keycloak home (kc.home.dir)."""
    return ctx.data_dir(NAME) / "home"


def install(ctx: Context) -> None:
    require_java(NAME)
    dest = dist(ctx)
    if installing.is_installed(dest):
        return
    with installing.install_lock(dest):
        _install(ctx, dest)


def _install(ctx: Context, dest: Path) -> None:
    version = ctx.versions.keycloak_version
    if not installing.is_installed(dest):
        url = tarball_url(version)
        tarball = installing.download(NAME, url, ctx.cache / "downloads" / url.rsplit("/", 1)[1],
                                      sha1_url=url + ".sha1")
        _unpack(tarball, dest)
        installing.step(NAME, f"building Keycloak {version} ({' '.join(BUILD_OPTIONS)}), "
                              "about a minute")
        installing.run(NAME, [str(dest / "bin" / "kc.sh"), "build", *BUILD_OPTIONS],
                       env={"JAVA_OPTS_KC_HEAP": HEAP}, log=dest / "build.log")
        installing.mark_installed(dest)


def _unpack(tarball: Path, dest: Path) -> None:
    """Unpack ``keycloak-X/…`` into ``dest`` (without the top folder)."""
    installing.step(NAME, f"unpacking {tarball.name}")
    if dest.exists():
        shutil.rmtree(dest)
    staging = dest.with_name(dest.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        archives.extract(tar, staging, trusted=True)
    (top,) = list(staging.iterdir())
    top.rename(dest)
    staging.rmdir()


def prepare(ctx: Context) -> None:
    """Lay out this checkout's home and put the realm file where --import-realm reads."""
    install_dir, h = dist(ctx), home(ctx)
    (h / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(install_dir / "bin" / "kc.sh", h / "bin" / "kc.sh")
    for name in LINKED:
        link = h / name
        if link.is_symlink() or link.exists():
            if link.resolve() == (install_dir / name).resolve():
                continue
            link.unlink()
        link.symlink_to(install_dir / name)
    imports = h / "data" / "import"
    imports.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ctx.compose_file(NAME, REALM_FILE), imports / REALM_FILE)


def realm_env(ctx: Context) -> dict[str, str]:
    """What the realm file's ``${VAR}`` placeholders resolve to (Compose sets the same)."""
    s = ctx.settings
    return {
        "KEYCLOAK_REALM": s.keycloak_realm,
        "SKIFF_PUBLIC_URL": s.public_url,
        "SKIFF_PORTAL_URL": f"http://{s.host('portal')}:{s.portal_port}",
        "DEVICE_CLIENT_ID": s.device_client_id,
        "PORTAL_CLIENT_SECRET": s.portal_client_secret.get_secret_value(),
        "JUPYTERHUB_CLIENT_SECRET": s.jupyterhub_client_secret.get_secret_value(),
        "AIRFLOW_CLIENT_SECRET": s.airflow_client_secret.get_secret_value(),
        "MLFLOW_CLIENT_SECRET": s.mlflow_client_secret.get_secret_value(),
        "DEVICE_CLIENT_SECRET": s.device_client_secret.get_secret_value(),
    }


def client_secrets(ctx: Context) -> dict[str, str]:
    """client_id -> the secret .env holds for it."""
    s = ctx.settings
    return {
        "portal": s.portal_client_secret.get_secret_value(),
        "jupyterhub": s.jupyterhub_client_secret.get_secret_value(),
        "airflow": s.airflow_client_secret.get_secret_value(),
        "mlflow": s.mlflow_client_secret.get_secret_value(),
        s.device_client_id: s.device_client_secret.get_secret_value(),
    }


def server_env(ctx: Context) -> dict[str, str]:
    """Keycloak's runtime options as KC_* variables: secrets stay out of `ps`."""
    s = ctx.settings
    return {
        "KC_DB_URL": f"jdbc:postgresql://{s.host('postgres')}:{s.postgres_port}/keycloak",
        "KC_DB_USERNAME": "keycloak",
        "KC_DB_PASSWORD": s.keycloak_db_password.get_secret_value(),
        "KC_HTTP_ENABLED": "true",
        "KC_HTTP_HOST": s.bind_host,
        "KC_HTTP_PORT": str(s.keycloak_port),
        "KC_HTTP_MANAGEMENT_PORT": str(s.keycloak_management_port),
        # One node: local caches, no cluster discovery (a run-time option since 26.x).
        "KC_CACHE": "local",
        # Tokens name the public address as issuer, wherever they were fetched.
        "KC_HOSTNAME": f"{s.public_url}{RELATIVE_PATH}",
        "KC_HOSTNAME_BACKCHANNEL_DYNAMIC": "true",
        # Traefik terminates TLS and says so in X-Forwarded-*.
        "KC_PROXY_HEADERS": "xforwarded",
        "KC_BOOTSTRAP_ADMIN_USERNAME": s.keycloak_admin_user,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": s.keycloak_admin_password.get_secret_value(),
        "JAVA_OPTS_KC_HEAP": HEAP,
        **realm_env(ctx),
    }


def programs(ctx: Context) -> list[Program]:
    java = java_command()
    env = server_env(ctx)
    # kc.sh runs `java` from JAVA_HOME, else from PATH: point it at the one we found.
    if os.sep in java:
        env["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    return [Program(
        name=NAME,
        command=[str(home(ctx) / "bin" / "kc.sh"), "start", "--optimized", "--import-realm"],
        env=env,
        directory=home(ctx),
        stop_wait=30,
    )]


def internal_url(ctx: Context) -> str:
    return ctx.settings.keycloak_internal_url


def jwks_url(ctx: Context) -> str:
    """The realm's signing keys, at the internal address."""
    return f"{internal_url(ctx)}/realms/{ctx.settings.keycloak_realm}/protocol/openid-connect/certs"


def health_url(ctx: Context) -> str:
    s = ctx.settings
    # The management interface inherits http-relative-path.
    return f"http://{s.host('keycloak')}:{s.keycloak_management_port}{RELATIVE_PATH}/health/ready"


def ready(ctx: Context) -> None:
    try:
        resp = httpx.get(health_url(ctx), timeout=3)
    except httpx.HTTPError as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise NotReady(f"health/ready answered {resp.status_code}")
    # Ready also means the realm import went through: everything else needs it.
    realm = f"{internal_url(ctx)}/realms/{ctx.settings.keycloak_realm}/.well-known/openid-configuration"
    try:
        found = httpx.get(realm, timeout=3)
    except httpx.HTTPError as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    if found.status_code != 200:
        raise NotReady(f"realm {ctx.settings.keycloak_realm!r} not there yet ({found.status_code})")


def bootstrap(ctx: Context) -> None:
    # Imported here: the CLI's other commands need not load python-keycloak.
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    s = ctx.settings
    try:
        admin = kc.admin_client(s)
        kc.sync_client_secrets(admin, client_secrets(ctx))
        kc.relax_user_profile(admin)
        if kc.find_user(admin, s.platform_admin_user) is None:
            kc.create_user(s, s.platform_admin_user, "admin", team=None,
                           password=s.platform_admin_password.get_secret_value(), admin=admin)
            installing.step(NAME, f"created the platform admin {s.platform_admin_user!r} "
                                  f"(realm {s.keycloak_realm}, role admin)")
    except KeycloakError as exc:
        raise RuntimeError(f"keycloak: bootstrap failed: {kc.describe(exc)}") from exc


SERVICE = Service(
    name=NAME,
    packages=JAVA_PACKAGES,
    description="Keycloak: single sign-on, realm skiff (users, roles, teams, clients)",
    programs=programs,
    ready=ready,
    url=internal_url,
    ports=lambda ctx: [ctx.settings.keycloak_port, ctx.settings.keycloak_management_port],
    depends_on=("postgres",),
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
    start_timeout=240,
)
