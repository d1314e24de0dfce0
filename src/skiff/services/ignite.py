"""Apache Ignite: the in-memory store of device/patient profiles for online features.

One server node. Natively it runs on Java 17 from ``ignite-core`` (plus
ignite-spring for the XML configuration and ignite-indexing for SQL) resolved
from Maven Central (``native/poms/ignite.xml``, version from versions.env); in
Compose it is the ``apacheignite/ignite`` image. Both read
``compose/ignite/ignite-config.xml``: native persistence and authentication on,
thin clients on ``IGNITE_PORT``. A new node's only user is ``ignite`` with the
password ``ignite``; :func:`bootstrap` replaces that with ``IGNITE_PASSWORD``
(docs/decisions/0012-online-features.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyignite import Client
from pyignite.datatypes.cluster_state import ClusterState
from pyignite.exceptions import AuthenticationError, ReconnectError, SQLError

from skiff.native.context import Context
from skiff.native.java import JAVA_PACKAGES, install_jars, java_command
from skiff.native.spec import NotReady, Program, Service

MAIN_CLASS = "org.apache.ignite.startup.cmdline.CommandLineStartup"
DISCOVERY_PORT = 47500
COMMUNICATION_PORT = 47100
USER = "ignite"
# What Ignite gives its superuser on a new node; the bootstrap changes it.
DEFAULT_PASSWORD = "ignite"
# Profiles take little room; the data region (ignite-config.xml) is off-heap.
HEAP = ["-Xms256m", "-Xmx512m"]
# ignite.sh's options for Java 11+ (Ignite 2 reaches into JDK internals).
JPMS_OPTS = [
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.base/sun.nio.ch",
        "java.management/com.sun.jmx.mbeanserver", "jdk.internal.jvmstat/sun.jvmstat.monitor",
        "java.base/sun.reflect.generics.reflectiveObjects")),
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.access", "java.base/jdk.internal.misc", "java.base/sun.nio.ch",
        "java.base/sun.util.calendar", "java.management/com.sun.jmx.mbeanserver",
        "jdk.internal.jvmstat/sun.jvmstat.monitor", "java.base/sun.reflect.generics.reflectiveObjects",
        "jdk.management/com.sun.management.internal", "java.base/java.io", "java.base/java.nio",
        "java.base/java.net", "java.base/java.util", "java.base/java.util.concurrent",
        "java.base/java.util.concurrent.locks", "java.base/java.util.concurrent.atomic",
        "java.base/java.lang", "java.base/java.lang.invoke", "java.base/java.math",
        "java.sql/java.sql", "java.base/java.lang.reflect", "java.base/java.time",
        "java.base/java.text", "java.management/sun.management", "java.desktop/java.awt.font")),
]
JVM_OPTS = [
    "-XX:+UseG1GC", "-XX:+DisableExplicitGC", "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    # No calls home for a newer version.
    "-DIGNITE_UPDATE_NOTIFIER=false",
]

# pyignite logs each failed connection attempt; while a node starts that is expected.
logging.getLogger("pyignite").addHandler(logging.NullHandler())


def libs(ctx: Context) -> Path:
    return ctx.component("ignite", ctx.versions.ignite_version) / "libs"


def install(ctx: Context) -> None:
    version = ctx.versions.ignite_version
    install_jars(ctx, "ignite", version, {"ignite.version": version})


def config_file(ctx: Context) -> Path:
    return ctx.compose_file("ignite", "ignite-config.xml")


def prepare(ctx: Context) -> None:
    if not config_file(ctx).is_file():
        raise RuntimeError(f"ignite: configuration {config_file(ctx)} is missing")


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    data = ctx.data_dir("ignite")
    return [Program(
        name="ignite",
        command=[java_command(), *HEAP, *JVM_OPTS, *JPMS_OPTS,
                 "-cp", f"{libs(ctx)}/*", MAIN_CLASS, str(config_file(ctx))],
        # Read by ignite-config.xml's placeholders.
        env={"IGNITE_WORK_DIR": str(data / "work"),
             "IGNITE_CLIENT_HOST": s.bind_host,
             "IGNITE_CLIENT_PORT": str(s.ignite_port),
             # Ignite writes its own log files under IGNITE_HOME/work/log unless told otherwise.
             "IGNITE_HOME": str(data)},
        directory=data,
        # A checkpoint on stop writes dirty pages: give it time before the KILL.
        stop_wait=60,
    )]


def connect(host: str, port: int, password: str, timeout: float = 5.0) -> Client:
    """A connected thin client as the ``ignite`` user; the caller closes it."""
    # One node: partition awareness would only add a background reconnect thread.
    client = Client(username=USER, password=password, use_ssl=False, partition_aware=False,
                    timeout=timeout, handshake_timeout=timeout)
    client.connect(host, port)
    return client


def ready(ctx: Context) -> None:
    s = ctx.settings
    try:
        # Either password: readiness comes before the bootstrap that sets ours.
        for password in (s.ignite_password.get_secret_value(), DEFAULT_PASSWORD):
            try:
                client = connect(s.host("ignite"), s.ignite_port, password, timeout=3)
            except AuthenticationError:
                continue
            try:
                # Answers on an inactive node too: activation is the bootstrap's job.
                client.get_cluster().get_state()
            finally:
                client.close()
            return
    except (ReconnectError, OSError) as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # a starting node answers with assorted errors
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    raise NotReady("neither IGNITE_PASSWORD nor the default password is accepted")


def set_password(host: str, port: int, password: str) -> bool:
    """Give user ``ignite`` ``password`` if it still has the default; True if changed.

    Idempotent: once changed, the default no longer signs in and nothing is done.
    """
    try:
        client = connect(host, port, password)
    except AuthenticationError:
        pass
    else:
        client.close()
        return False
    try:
        client = connect(host, port, DEFAULT_PASSWORD)
    except AuthenticationError as exc:
        raise RuntimeError("ignite: neither IGNITE_PASSWORD nor the default password signs in; "
                           "was IGNITE_PASSWORD changed after the first start?") from exc
    try:
        # A literal, not a parameter: DDL takes no bind variables. Our generated
        # passwords are URL-safe base64; a quote would still be escaped.
        quoted = password.replace("'", "''")
        client.sql(f"ALTER USER \"{USER}\" WITH PASSWORD '{quoted}'")
    except SQLError as exc:
        raise RuntimeError(f"ignite: changing the password failed: {exc}") from exc
    finally:
        client.close()
    return True


def activate(host: str, port: int, password: str) -> bool:
    """Activate a new node (which makes it the baseline); True if it was inactive."""
    client = connect(host, port, password)
    try:
        cluster = client.get_cluster()
        if cluster.get_state() == ClusterState.ACTIVE:
            return False
        cluster.set_state(ClusterState.ACTIVE)
        return True
    finally:
        client.close()


def bootstrap(ctx: Context) -> None:
    s = ctx.settings
    host, port, password = s.host("ignite"), s.ignite_port, s.ignite_password.get_secret_value()
    # Users live in the persistent metastore: activate first, then change the password.
    try:
        activate(host, port, password)
    except AuthenticationError:
        activate(host, port, DEFAULT_PASSWORD)
    set_password(host, port, password)


def url(ctx: Context) -> str:
    return f"ignite://{ctx.settings.host('ignite')}:{ctx.settings.ignite_port}"


def ports(ctx: Context) -> list[int]:
    return [ctx.settings.ignite_port, DISCOVERY_PORT, COMMUNICATION_PORT]


SERVICE = Service(
    name="ignite",
    packages=(*JAVA_PACKAGES, "maven"),
    description="Apache Ignite: device/patient profiles for online features (one node)",
    programs=programs,
    ready=ready,
    url=url,
    ports=ports,
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
    start_timeout=180.0,
)
