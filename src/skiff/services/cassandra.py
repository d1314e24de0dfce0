"""Cassandra: the store of captured prediction requests, one node.

Natively it runs on Java 17 from ``cassandra-all`` and its runtime jars resolved
from Maven Central (``native/poms/cassandra.xml``, version from versions.env); in
Compose it is the ``cassandra`` image. Both log through
``compose/cassandra/logback.xml`` and get their keyspace and tables from
``compose/cassandra/schema.cql``, applied by :func:`apply_schema`.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

import yaml
from cassandra import AuthenticationFailed
from cassandra.cluster import Cluster, NoHostAvailable

from skiff import cassandra_access as access
from skiff.native.context import Context
from skiff.native.java import JAVA_PACKAGES, install_jars, java_command
from skiff.native.spec import NotReady, Program, Service

STORAGE_PORT = 7000
JMX_PORT = 7199
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
# The keyspace compose/cassandra/schema.cql creates; CASSANDRA_KEYSPACE must name it.
SCHEMA_KEYSPACE = "skiff"
# cassandra-env.sh computes ~1 GiB for a small machine. No -Xmn: with G1 it would
# override the pause-time goal, and cassandra-env.sh refuses to start with both.
HEAP = ["-Xms256m", "-Xmx1g"]
# jvm-server.options and jvm17-server.options of Cassandra 5.0, less what only
# pays off on big dedicated hosts (AlwaysPreTouch would make all of -Xms resident
# at once, UseNUMA, a 16 MiB G1 region on a 1 GiB heap).
JVM_OPTS = [
    "-ea", "-da:net.openhft...",  # upstream: openhft's assertions exhaust memory by design
    "-Xss256k", "-XX:+UseTLAB", "-XX:+ResizeTLAB", "-XX:+PerfDisableSharedMem",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5", "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    # A heap dump of a dev box's 1 GiB heap helps nobody; restart instead.
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]
# Cassandra reaches into JDK internals (jamm, Chronicle, Netty, the UDF sandbox).
JPMS_OPTS = [
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
        "java.rmi/sun.rmi.registry", "java.rmi/sun.rmi.server", "java.sql/java.sql",
        "java.base/java.lang.ref", "jdk.unsupported/sun.misc",
        "jdk.compiler/com.sun.tools.javac.file", "jdk.attach/sun.tools.attach")),
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader",
        "java.base/jdk.internal.ref", "java.base/jdk.internal.reflect",
        "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
        "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect",
        "jdk.compiler/com.sun.tools.javac", "java.base/java.lang", "java.base/java.util")),
]

# The driver logs every refused connection; while we poll a starting node that is
# expected, so keep it off stderr unless the application configures logging.
logging.getLogger("cassandra").addHandler(logging.NullHandler())


def home(ctx: Context) -> Path:
    return ctx.component("cassandra", ctx.versions.cassandra_version)


def libs(ctx: Context) -> Path:
    return home(ctx) / "libs"


def install(ctx: Context) -> None:
    version = ctx.versions.cassandra_version
    install_jars(ctx, "cassandra", version, {"cassandra.version": version})


def cassandra_yaml(ctx: Context) -> Path:
    return ctx.conf_dir("cassandra") / "cassandra.yaml"


def logback_config(ctx: Context) -> Path:
    return ctx.compose_file("cassandra", "logback.xml")


def schema_file(ctx: Context) -> Path:
    return ctx.compose_file("cassandra", "schema.cql")


def advertised_host(ctx: Context) -> str:
    # Cassandra refuses a wildcard listen_address, and clients cannot connect back to one:
    # the machine's (the container's) own address then.
    return ctx.settings.advertised_host


def render_config(ctx: Context) -> dict[str, object]:
    s = ctx.settings
    data = ctx.data_dir("cassandra")
    host = advertised_host(ctx)
    config: dict[str, object] = {
        "cluster_name": "Skiff",
        "num_tokens": 16,
        "data_file_directories": [str(data / "data")],
        "commitlog_directory": str(data / "commitlog"),
        "saved_caches_directory": str(data / "saved_caches"),
        "hints_directory": str(data / "hints"),
        "cdc_raw_directory": str(data / "cdc_raw"),
        # No defaults for these: without them 5.0 refuses to start.
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
        "commitlog_sync": "periodic",
        "commitlog_sync_period": "10000ms",
        "endpoint_snitch": "SimpleSnitch",
        "seed_provider": [{
            "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
            "parameters": [{"seeds": f"{host}:{STORAGE_PORT}"}],
        }],
        "listen_address": host,
        "storage_port": STORAGE_PORT,
        "rpc_address": s.bind_host,
        "start_native_transport": True,
        "native_transport_port": s.cassandra_port,
        # Every client logs in as a role and may do what it was granted (skiff.cassandra_access).
        "authenticator": "PasswordAuthenticator",
        "authorizer": "CassandraAuthorizer",
        "role_manager": "CassandraRoleManager",
        # A new cluster with no 4.x nodes or sstables: 5.0's formats and limits from
        # the start (the 4.x default would need a rolling step later to leave).
        "storage_compatibility_mode": "NONE",
        # One compaction at a time: the machine is shared with the rest of the stack.
        "concurrent_compactors": 1,
    }
    if host != s.bind_host:
        # rpc_address is a wildcard: tell clients (and the driver's peers table) where to go.
        config["broadcast_rpc_address"] = host
    return config


def prepare(ctx: Context) -> None:
    """Write cassandra.yaml from .env; the data folders are created by Cassandra."""
    # Cassandra warns on every schema change when its triggers folder is missing.
    triggers_dir(ctx).mkdir(exist_ok=True)
    header = "# Written by skiff (services/cassandra.py) before each start: edit .env, not this.\n"
    cassandra_yaml(ctx).write_text(header + yaml.safe_dump(render_config(ctx), sort_keys=False))
    if not logback_config(ctx).is_file():
        raise RuntimeError(f"cassandra: logging config {logback_config(ctx)} is missing")


def triggers_dir(ctx: Context) -> Path:
    return ctx.conf_dir("cassandra") / "triggers"


def jamm_jar(ctx: Context) -> Path:
    # The jar's version follows cassandra-all's pom, so find it rather than name it.
    found = sorted(libs(ctx).glob("jamm-*.jar"))
    return found[-1] if found else libs(ctx) / "jamm.jar"


def programs(ctx: Context) -> list[Program]:
    data = ctx.data_dir("cassandra")
    return [Program(
        name="cassandra",
        command=[
            java_command(), *HEAP, *JVM_OPTS, *JPMS_OPTS,
            # jamm measures object sizes for memtable accounting.
            f"-javaagent:{jamm_jar(ctx)}",
            f"-Dcassandra.config=file://{cassandra_yaml(ctx)}",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.logdir={ctx.log_dir}",
            f"-Dcassandra.triggers_dir={triggers_dir(ctx)}",
            f"-Dlogback.configurationFile={logback_config(ctx)}",
            "-Dcassandra-foreground=yes",
            # JMX (nodetool) on loopback only, as cassandra-env.sh's LOCAL_JMX=yes does.
            f"-Dcassandra.jmx.local.port={JMX_PORT}",
            "-Dcom.sun.management.jmxremote.authenticate=false",
            # One node: there is no gossip to wait for (saves ~10s per start).
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            # A new node's default superuser at once, not 10 s later: the bootstrap needs it.
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp", f"{libs(ctx)}/*", MAIN_CLASS,
        ],
        # cassandra-env.sh's value: fewer glibc arenas, much less resident memory.
        env={"MALLOC_ARENA_MAX": "4"},
        # hs_err files and the like land next to the data, not in the launcher's cwd.
        directory=data,
        # A drain flushes memtables; give it time before the KILL.
        stop_wait=60,
    )]


def connect(ctx: Context, role: str, timeout: float) -> Cluster:
    """A cluster handle to the platform's node as one of its roles; the caller shuts it down."""
    s = ctx.settings
    return access.connect(s.host("cassandra"), s.cassandra_port, access.login(s, role), timeout)


def why_unreachable(exc: NoHostAvailable) -> str:
    # One host: its error says it all (connection refused, still starting...).
    errors = list(exc.errors.values())
    return str(errors[0]) if errors else str(exc)


def refused_login(exc: NoHostAvailable) -> bool:
    return any(isinstance(e, AuthenticationFailed) for e in exc.errors.values())


def ready(ctx: Context) -> None:
    cluster = connect(ctx, access.ADMIN, timeout=3)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
    except NoHostAvailable as exc:
        if refused_login(exc):
            return  # the node answers and checks passwords: its roles are the bootstrap's job
        raise NotReady(why_unreachable(exc)) from exc
    except Exception as exc:  # the driver raises many kinds while a node starts
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    finally:
        cluster.shutdown()
    if row is None:
        raise NotReady("system.local is empty")


def split_statements(cql: str) -> list[str]:
    """The statements of a CQL script: split on ';' outside comments and string literals.

    Comments are dropped (``--``, ``//`` and ``/* */``); so are empty statements.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(cql)
    while i < n:
        ch, two = cql[i], cql[i:i + 2]
        if two in ("--", "//"):
            end = cql.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            end = cql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
        elif ch in "'\"":
            # A quote inside a literal is doubled ('it''s'), which this reads as two literals.
            end = cql.find(ch, i + 1)
            end = n if end < 0 else end + 1
            current.append(cql[i:end])
            i = end
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def apply_schema(host: str, port: int, cql: str, who: access.Login) -> int:
    """Run each statement of ``cql`` against one node as ``who``; returns how many ran.

    The statements must be idempotent (IF NOT EXISTS): this runs on every bootstrap.
    """
    statements = split_statements(cql)
    # Schema changes wait for the node to agree on the new version: allow for it.
    cluster = access.connect(host, port, who, timeout=30)
    try:
        session = cluster.connect()
        for statement in statements:
            try:
                session.execute(statement)
            except Exception as exc:
                first = " ".join(statement.split())[:80]
                raise RuntimeError(f"cassandra: schema statement failed: {first}...: "
                                   f"{type(exc).__name__}: {exc}") from exc
    except NoHostAvailable as exc:
        raise RuntimeError(f"cassandra: cannot connect to {host}:{port} to apply the schema: "
                           f"{why_unreachable(exc)}") from exc
    finally:
        cluster.shutdown()
    return len(statements)


def ensure_admin(host: str, port: int, admin: access.Login, wait: float = 60.0) -> str:
    """Make ``admin`` the node's superuser and disable the default one; idempotent.

    Returns what was done. A new node has only ``cassandra``/``cassandra``, created
    just after it starts: that login is retried for up to ``wait`` seconds.
    """
    try:
        _run(host, port, admin, ["SELECT release_version FROM system.local"])
        return f"{admin.username} exists"
    except NoHostAvailable as exc:
        if not refused_login(exc):
            raise RuntimeError(f"cassandra: cannot connect to {host}:{port}: {why_unreachable(exc)}") from exc
    default = access.Login(*access.DEFAULT_SUPERUSER)
    deadline = time.monotonic() + wait
    while True:
        try:
            _run(host, port, default, [
                f"CREATE ROLE IF NOT EXISTS {admin.username} WITH SUPERUSER = true AND LOGIN = true "
                f"AND PASSWORD = {access.quoted(admin.password)}"])
            break
        except NoHostAvailable as exc:
            if not refused_login(exc) or time.monotonic() > deadline:
                raise RuntimeError(
                    f"cassandra: {admin.username}'s password (CASSANDRA_ADMIN_PASSWORD) is refused and "
                    f"so is the default superuser's: the node's data was made with another .env "
                    f"(`skiff reset` wipes it): {why_unreachable(exc)}") from exc
            time.sleep(1)
    # Nobody logs in as the well-known default any more.
    _run(host, port, admin, [f"ALTER ROLE {default.username} WITH SUPERUSER = false AND LOGIN = false "
                             f"AND PASSWORD = {access.quoted(secrets.token_urlsafe(24))}"])
    return f"created {admin.username}, disabled {default.username}"


def _run(host: str, port: int, who: access.Login, statements: list[str]) -> None:
    cluster = access.connect(host, port, who, timeout=30)
    try:
        session = cluster.connect()
        for statement in statements:
            session.execute(statement)
    finally:
        cluster.shutdown()


def bootstrap(ctx: Context) -> None:
    s = ctx.settings
    host, port, admin = s.host("cassandra"), s.cassandra_port, access.login(s, access.ADMIN)
    logging.getLogger(__name__).info("cassandra: %s", ensure_admin(host, port, admin))
    apply_schema(host, port, schema_file(ctx).read_text(), admin)
    for role in access.GRANTS:
        who = access.login(s, role)
        _run(host, port, admin, [access.create_role(who), *access.grants(role)])
        if not logs_in(host, port, who):
            # The role was there with another password (.env changed): .env's wins.
            # Not on every run: Cassandra refuses a second change within seconds.
            _run(host, port, admin, [access.set_password(who)])


def logs_in(host: str, port: int, who: access.Login) -> bool:
    try:
        _run(host, port, who, [])
    except NoHostAvailable as exc:
        if refused_login(exc):
            return False
        raise
    return True


def url(ctx: Context) -> str:
    return f"cql://{ctx.settings.host('cassandra')}:{ctx.settings.cassandra_port}"


def ports(ctx: Context) -> list[int]:
    return [ctx.settings.cassandra_port, STORAGE_PORT, JMX_PORT]


SERVICE = Service(
    name="cassandra",
    packages=(*JAVA_PACKAGES, "maven"),
    description="Cassandra store of captured predictions (one node)",
    programs=programs,
    ready=ready,
    url=url,
    ports=ports,
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
    # Cold start on two cores: JIT, the system keyspaces, a first commit log.
    start_timeout=300.0,
)
