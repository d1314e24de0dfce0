"""Kafka: the platform's event bus, one KRaft node that is both broker and controller.

Natively it runs on Java 17+ from the broker's jars resolved from Maven Central
(``native/poms/kafka.xml``, versions from versions.env); in Compose it is the
``apache/kafka`` image. Both log through ``compose/kafka/log4j2.yaml``.

The storage is formatted once with ``KAFKA_CLUSTER_ID`` from ``.env``; the
quorum is static (``controller.quorum.voters``), so changing a port or the bind
host in ``.env`` needs no re-format.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from skiff.native.context import Context
from skiff.native.java import JAVA_PACKAGES, install_jars, java_command, require_java
from skiff.native.spec import NotReady, Program, Service

NODE_ID = 1
PARTITIONS = 3
REPLICATION = 1
HEAP = ["-Xms256m", "-Xmx512m"]
# kafka-run-class.sh's GC settings: short pauses matter more than throughput here.
JVM_OPTS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true"]
MAIN_CLASS = "kafka.Kafka"
# Still in the core jar (kafka_2.13) in Kafka 4.x: what bin/kafka-storage.sh runs.
STORAGE_TOOL = "kafka.tools.StorageTool"

# kafka-python logs every refused connection; while we poll a starting broker
# that is expected, so keep it off stderr unless the application configures logging.
logging.getLogger("kafka").addHandler(logging.NullHandler())


def home(ctx: Context) -> Path:
    return ctx.component("kafka", ctx.versions.kafka_version)


def libs(ctx: Context) -> Path:
    return home(ctx) / "libs"


def install(ctx: Context) -> None:
    v = ctx.versions
    install_jars(ctx, "kafka", v.kafka_version,
                 {"kafka.version": v.kafka_version, "scala.binary.version": v.scala_binary_version})


def server_properties(ctx: Context) -> Path:
    return ctx.conf_dir("kafka") / "server.properties"


def log4j_config(ctx: Context) -> Path:
    return ctx.compose_file("kafka", "log4j2.yaml")


def advertised_host(ctx: Context) -> str:
    host = ctx.settings.host("kafka")
    # A wildcard bind address is not something a client can connect back to.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def bootstrap_servers(ctx: Context) -> str:
    return f"{ctx.settings.host('kafka')}:{ctx.settings.kafka_port}"


def render_properties(ctx: Context) -> str:
    s = ctx.settings
    # A second listener for clients outside the network the broker's name resolves in
    # (the host of a Compose stack, docker-compose.ports.yml), advertised on loopback.
    external = ("", "", "")
    if s.kafka_external_port:
        port = s.kafka_external_port
        external = (f",EXTERNAL://{s.bind_host}:{port}", f",EXTERNAL://127.0.0.1:{port}",
                    ",EXTERNAL:PLAINTEXT")
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{advertised_host(ctx)}:{s.kafka_controller_port}",
        "listeners": (f"PLAINTEXT://{s.bind_host}:{s.kafka_port},"
                      f"CONTROLLER://{s.bind_host}:{s.kafka_controller_port}" + external[0]),
        "advertised.listeners": f"PLAINTEXT://{advertised_host(ctx)}:{s.kafka_port}" + external[1],
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT" + external[2],
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(ctx.data_dir("kafka")),
        # One node: every internal topic has a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Topics are created by bootstrap, never by a typo in a producer.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # 50 partitions by default: slow to create on two cores, pointless for one node.
        "offsets.topic.num.partitions": "10",
        # No other members to wait for when a consumer group first forms.
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }
    header = "# Written by skiff (services/kafka.py) before each start: edit .env, not this.\n"
    return header + "".join(f"{k}={v}\n" for k, v in props.items())


def formatted_cluster_id(data: Path) -> str | None:
    """The cluster id in the data folder's meta.properties, None if not formatted."""
    meta = data / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return ""


def java_failure(output: str) -> str:
    """The line of a Java tool's output that says why it failed.

    That is the innermost cause of a stack trace, or the tool's own message: the
    last line that is neither a log line ("[date] ...") nor a frame ("\tat ...").
    """
    causes = [line for line in output.splitlines()
              if line.strip() and not line[0].isspace() and not line.startswith("[")]
    if not causes:
        return "no output"
    reason = causes[-1].removeprefix("Caused by: ")
    return reason.split('Exception in thread "main" ', 1)[-1]


def prepare(ctx: Context) -> None:
    """Write server.properties and format the KRaft storage once."""
    config = server_properties(ctx)
    config.write_text(render_properties(ctx))
    data = ctx.data_dir("kafka")
    wanted = ctx.settings.kafka_cluster_id
    found = formatted_cluster_id(data)
    if found is not None:
        if found != wanted:
            # The broker would refuse to start with a less obvious message.
            raise RuntimeError(f"kafka: {data} was formatted for cluster id {found!r} but "
                               f"KAFKA_CLUSTER_ID is {wanted!r}; restore it or reset the data")
        return
    log = ctx.log_dir / "kafka-format.log"
    cmd = [require_java("kafka"), *HEAP, f"-Dlog4j2.configurationFile={log4j_config(ctx)}",
           "-cp", f"{libs(ctx)}/*", STORAGE_TOOL,
           "format", "--cluster-id", wanted, "--config", str(config)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    log.write_text(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"kafka: formatting storage failed ({done.returncode}): "
                           f"{java_failure(done.stdout)} (see {log})")


def programs(ctx: Context) -> list[Program]:
    return [Program(
        name="kafka",
        command=[java_command(), *HEAP, *JVM_OPTS,
                 f"-Dlog4j2.configurationFile={log4j_config(ctx)}",
                 "-cp", f"{libs(ctx)}/*", MAIN_CLASS, str(server_properties(ctx))],
        # hs_err files and the like land next to the data, not in the launcher's cwd.
        directory=ctx.data_dir("kafka"),
        stop_wait=30,
    )]


@contextmanager
def admin(bootstrap: str, timeout_ms: int = 5000) -> Iterator[KafkaAdminClient]:
    """An admin client that gives up quickly when the broker is down, always closed."""
    client = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="skiff",
                              request_timeout_ms=timeout_ms,
                              api_version_auto_timeout_ms=timeout_ms)
    try:
        yield client
    finally:
        client.close()


def ready(ctx: Context) -> None:
    try:
        with admin(bootstrap_servers(ctx), timeout_ms=3000) as client:
            brokers = client.describe_cluster().get("brokers") or []
    except (KafkaError, OSError) as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    if not brokers:
        raise NotReady("no broker registered yet")


def create_topics(bootstrap_servers: str, topics: list[str]) -> list[str]:
    """Create the missing topics; returns those created. Used by bootstrap and the CLI."""
    created = []
    with admin(bootstrap_servers, timeout_ms=15000) as client:
        existing = set(client.list_topics())
        for topic in topics:
            if topic in existing:
                continue
            # One request per topic: a batch fails whole if one already exists.
            try:
                client.create_topics([NewTopic(topic, PARTITIONS, REPLICATION)])
            except TopicAlreadyExistsError:
                continue
            created.append(topic)
    return created


def bootstrap(ctx: Context) -> None:
    create_topics(bootstrap_servers(ctx), ctx.settings.topics)


def url(ctx: Context) -> str:
    return f"kafka://{bootstrap_servers(ctx)}"


def ports(ctx: Context) -> list[int]:
    return [ctx.settings.kafka_port, ctx.settings.kafka_controller_port]


SERVICE = Service(
    name="kafka",
    packages=(*JAVA_PACKAGES, "maven"),
    description="Kafka event bus (KRaft, one broker+controller node)",
    programs=programs,
    ready=ready,
    url=url,
    ports=ports,
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
)
