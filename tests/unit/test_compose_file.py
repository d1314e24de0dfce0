"""docker-compose.yml checked without a Docker engine: one recipe, native programs, order, limits.

Every image is docker/Dockerfile with a SERVICE build argument (`skiff install
--no-deps SERVICE`); every long-running container is `skiff-run PROGRAM`, a program
of the native registry; every init job is `skiff bootstrap SERVICE`. These tests
read the file with PyYAML (merge keys resolved, as Compose does) and hold it to that.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import compose_spec
import pytest
import yaml

from skiff.envfile import GENERATORS, parse
from skiff.native import foreground
from skiff.native.context import Context
from skiff.services import MODULES, REGISTRY, load
from skiff.settings import Settings

pytestmark = pytest.mark.unit

VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
RECIPE = "docker/Dockerfile"
IMAGE = re.compile(r"skiff/([a-z0-9-]+):\$\{SKIFF_IMAGE_TAG:-dev\}")
# Where an image keeps the state of its services (docker/Dockerfile's SKIFF_STATE).
STATE = "/var/lib/skiff"
# The most open files the engine lets a container have (../shared/ci/docker-engine.sh).
NOFILE_MAX = 20000
# The one dependency that waits only for a start: the proxy is healthy once the hub
# answers through it (the jupyterhub service's ready check), so the hub cannot wait
# for the proxy's health (see test_the_hub_waits_only_for_its_proxys_start).
STARTED_IS_ENOUGH = {("jupyterhub", "jupyterhub-proxy")}
# Containers that need none of their native service's dependencies: the hub's proxy
# only forwards to the hub, which waits for Keycloak itself.
INDEPENDENT = {"jupyterhub-proxy"}
# Containers whose program has no check of its own (neither Program.health nor, as
# its service's first program, Service.ready): skiff-run reports them ready as soon
# as they run. Fixing one makes test_every_container_checks_its_own_program fail
# until it leaves this set.
UNCHECKED: set[str] = set()


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, $$."""

    def one(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2) or "", match.group(3) or ""
        value = values.get(name)
        if (op.startswith(":-") and not value) or (op.startswith("-") and value is None):
            return default
        assert value is not None, f"${{{name}}} has no value and no default"
        return value

    text = re.sub(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?-)([^}]*))?\}", one, text)
    return text.replace("$$", "$")


def test_compose_file_follows_the_compose_specification(root: Path, versions: dict[str, str]) -> None:
    # What `skiff init` would write: the example's values, a secret in every blank it
    # generates; other blanks (TLS_CERT_FILE...) stay empty and take the file's defaults.
    values = {k: v or ("generated-secret" if k in GENERATORS else "")
              for k, v in parse((root / ".env.example").read_text()).items()}
    text = interpolate((root / "docker-compose.yml").read_text(), {**values, **versions})
    # PyYAML resolves the `<<` merge keys, as Compose does; the spec parser does not.
    compose = compose_spec.PyCompose.from_json(json.dumps(yaml.safe_load(text)))
    compose.validate()
    assert compose.name == "skiff"


# --- helpers ---------------------------------------------------------------------


def long_running(compose_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_doc["services"].items() if s.get("restart") != "no"}


def init_jobs(compose_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_doc["services"].items() if s.get("restart") == "no"}


def installed_in(compose_doc: dict[str, Any], image: str) -> set[str]:
    """The services whose `skiff install` went into ``image`` (its SERVICE build arg)."""
    [builder] = [s for s in compose_doc["services"].values()
                 if s["image"] == image and "build" in s]
    return set(str(builder["build"]["args"]["SERVICE"]).split())


def after(compose_doc: dict[str, Any], name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through another."""
    services = compose_doc["services"]
    seen: set[str] = set()
    todo = list(services[name].get("depends_on") or {})
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(services[dep].get("depends_on") or {})
    return seen


def assert_listens(ctx: Context, compose_doc: dict[str, Any], host: str | None, port: int | None,
                   what: str) -> None:
    """``host:port`` is a long-running compose service whose program serves that port.

    The port must be one of the native service's ports, and the program's definition
    (command line or environment) must name it: a URL that points at the right
    container on another program's port fails here.
    """
    assert host in long_running(compose_doc), f"{what}: {host} is not a long-running compose service"
    svc, prog = foreground.find(ctx, host)
    assert port in svc.ports(ctx), f"{what}: {port} is not a port of {svc.name}"
    words = [*prog.command, *prog.env.values()]
    assert str(port) in re.findall(r"\d+", " ".join(words)), f"{what}: {prog.name} is not told port {port}"


def dockerfile_lines(root: Path) -> list[str]:
    """docker/Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (root / RECIPE).read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- images: one recipe ------------------------------------------------------------


def test_every_service_runs_a_project_image_tagged_by_skiff_image_tag(compose_doc: dict[str, Any]) -> None:
    wrong = {n: s.get("image") for n, s in compose_doc["services"].items()
             if not IMAGE.fullmatch(str(s.get("image")))}
    assert wrong == {}


def test_every_image_is_built_once_from_the_recipe_for_registered_services(
        compose_doc: dict[str, Any]) -> None:
    built: dict[str, str] = {}
    for name, svc in compose_doc["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        assert (build["context"], build["dockerfile"]) == (".", RECIPE), name
        assert set(build["args"]) <= {"BASE_IMAGE", "SERVICE"}, name
        wanted = str(build["args"]["SERVICE"]).split()
        assert wanted, f"{name}: an empty SERVICE installs nothing"
        assert set(wanted) <= set(MODULES), f"{name}: {set(wanted) - set(MODULES)} are not services"
        image = svc["image"]
        assert image not in built, f"{name} and {built.get(image)} both build {image}"
        built[image] = name
        if len(wanted) == 1:
            # One service, one image of its name: skiff/kafka is Kafka.
            assert IMAGE.fullmatch(image).group(1) == wanted[0], f"{name}: {image}"  # type: ignore[union-attr]
    for name, svc in compose_doc["services"].items():
        if "build" not in svc:
            assert svc["image"] in built, f"{name}: no service builds {svc['image']}"
            # Never from a registry: skiff/* images exist only where they were built.
            assert svc.get("pull_policy") == "never", f"{name} may pull {svc['image']}"


def test_the_recipe_is_debian_plus_the_native_installer(root: Path, compose_doc: dict[str, Any]) -> None:
    lines = dockerfile_lines(root)
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE}"]
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in lines[:lines.index(froms[0])]
    # Compose passes the same default when .env leaves BASE_IMAGE blank.
    assert compose_doc["x-base"]["BASE_IMAGE"] == "${BASE_IMAGE:-debian:bookworm-slim}"
    for name, svc in compose_doc["services"].items():
        if "BASE_IMAGE" in (svc.get("build") or {}).get("args", {}):
            assert svc["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-debian:bookworm-slim}", name
    assert "ARG SERVICE" in lines
    assert [line for line in lines if re.search(r"\bskiff install --no-deps \$\{?SERVICE\}?", line)]
    # Where native code keeps state in a container (Context.discover reads SKIFF_STATE).
    assert any(re.search(rf"\bSKIFF_STATE={STATE}(\s|$)", line) for line in lines if line.startswith("ENV "))


def test_every_build_passes_base_image(compose_doc: dict[str, Any]) -> None:
    missing = [n for n, s in compose_doc["services"].items()
               if "build" in s and "BASE_IMAGE" not in s["build"].get("args", {})]
    assert missing == []


# --- what runs: native programs and bootstraps -------------------------------------


def test_every_native_program_is_a_compose_service(compose_doc: dict[str, Any], compose_ctx: Context) -> None:
    # The same word everywhere: `skiff logs NAME` and `docker compose logs NAME`.
    programs = {p.name for svc in REGISTRY.values() for p in svc.programs(compose_ctx)}
    assert programs - set(long_running(compose_doc)) == set()


def test_each_long_running_service_runs_its_own_program_in_an_image_that_installs_it(
        compose_doc: dict[str, Any], compose_ctx: Context) -> None:
    programs = {p.name for svc in REGISTRY.values() for p in svc.programs(compose_ctx)}
    for name, svc in long_running(compose_doc).items():
        assert svc["command"] == ["skiff-run", name], name
        assert name in programs, f"{name} is no program of the native registry"
        owner = load(name).name
        assert owner in installed_in(compose_doc, svc["image"]), \
            f"{name}: {svc['image']} does not install {owner}"


def test_each_init_job_bootstraps_a_registered_service_in_an_image_that_installs_it(
        compose_doc: dict[str, Any]) -> None:
    bootstrapped = []
    for name, job in init_jobs(compose_doc).items():
        command = job["command"]
        assert command[:2] == ["skiff", "bootstrap"] and len(command) == 3, f"{name}: {command}"
        service = command[2]
        assert service in REGISTRY, f"{name}: {service} is not a service"
        assert REGISTRY[service].bootstrap is not None, f"{name}: {service} has no bootstrap"
        assert service in installed_in(compose_doc, job["image"]), \
            f"{name}: {job['image']} does not install {service}"
        assert "build" not in job and "healthcheck" not in job, name
        bootstrapped.append(service)
    # Each native bootstrap runs once per `docker compose up`, none is forgotten.
    assert sorted(bootstrapped) == sorted(n for n, s in REGISTRY.items() if s.bootstrap)


def test_every_container_checks_its_own_program(compose_doc: dict[str, Any], compose_ctx: Context) -> None:
    unchecked = set()
    for name, svc in long_running(compose_doc).items():
        # The shared check reads what skiff-run writes (src/skiff/native/foreground.py).
        assert "/run/skiff/health" in " ".join(svc["healthcheck"]["test"]), name
        service, prog = foreground.find(compose_ctx, name)
        if prog.health is None and prog.name != service.programs(compose_ctx)[0].name:
            unchecked.add(name)
    assert unchecked == UNCHECKED


# --- start order ---------------------------------------------------------------------


def test_dependencies_wait_for_health_or_completion(compose_doc: dict[str, Any]) -> None:
    allowed = {"service_healthy", "service_completed_successfully"}
    services = compose_doc["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if (name, dep) in STARTED_IS_ENOUGH:
                assert cond["condition"] == "service_started", f"{name} -> {dep}: {cond}"
                continue
            assert cond["condition"] in allowed, f"{name} -> {dep}: {cond}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s missing check"
                assert services[dep].get("restart") != "no", f"{dep} is a one-shot job"
            else:
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot job"
        assert name not in after(compose_doc, name), f"{name} waits for itself"


def test_the_hub_waits_only_for_its_proxys_start(compose_ctx: Context) -> None:
    # Why STARTED_IS_ENOUGH holds: the proxy is the jupyterhub service's first program,
    # so its container's health is the service's ready check, which asks the hub's
    # health through the proxy.
    proxy, hub = REGISTRY["jupyterhub"].programs(compose_ctx)
    assert (proxy.name, hub.name) == ("jupyterhub-proxy", "jupyterhub")
    assert proxy.health is None
    assert {(hub.name, proxy.name)} == STARTED_IS_ENOUGH


def test_each_container_starts_after_what_its_native_service_needs(
        compose_doc: dict[str, Any], compose_ctx: Context) -> None:
    running = long_running(compose_doc)
    assert set(running) >= INDEPENDENT
    first = {svc.name: svc.programs(compose_ctx)[0].name for svc in REGISTRY.values()}
    bootstraps = {job["command"][2]: name for name, job in init_jobs(compose_doc).items()}
    for name in running:
        service, prog = foreground.find(compose_ctx, name)
        before = after(compose_doc, name)
        if prog.name != first[service.name]:
            # The first program's container runs the service's prepare (Airflow's migration).
            assert first[service.name] in before, f"{name} may start before {first[service.name]}"
        if name in INDEPENDENT:
            continue
        # Natively a service starts once what it depends on is ready: here each of its
        # containers waits for that service's container or its init job.
        for dep in service.depends_on:
            assert before & {first[dep], bootstraps.get(dep)}, f"{name} may start before {dep}"


def test_no_service_waits_with_sleep(root: Path) -> None:
    commands = [line for line in (root / "docker-compose.yml").read_text().splitlines()
                if not line.lstrip().startswith("#")]
    assert [line for line in commands if re.search(r"\bsleep\b", line)] == []


# --- what containers get: ports, limits, addresses, volumes ------------------------


def test_only_traefik_publishes_ports_and_every_container_has_limits(compose_doc: dict[str, Any]) -> None:
    services = compose_doc["services"]
    assert [n for n, s in services.items() if "ports" in s] == ["traefik"]
    assert [n for n, s in services.items() if not s.get("mem_limit")] == []
    # Compose names the containers: scaled services (spark-worker) need that.
    assert [n for n, s in services.items() if "container_name" in s] == []
    for name, svc in services.items():
        nofile = (svc.get("ulimits") or {}).get("nofile")
        if nofile is None:
            continue
        limits = [nofile] if isinstance(nofile, int) else [nofile["soft"], nofile["hard"]]
        assert max(int(limit) for limit in limits) <= NOFILE_MAX, f"{name}: nofile {nofile}"


def test_every_container_finds_the_others_by_service_name(compose_doc: dict[str, Any]) -> None:
    hosts = compose_doc["x-hosts"]
    for name, svc in compose_doc["services"].items():
        assert svc["env_file"] in (".env", [".env"]), name
        assert {k: (svc.get("environment") or {}).get(k) for k in hosts} == hosts, name
    assert hosts["BIND_HOST"] == "0.0.0.0"
    # Every *_HOST setting is set (else a client would call BIND_HOST, 0.0.0.0), and
    # every variable set is a setting (else nothing reads it).
    settings = {n for n in Settings.model_fields if n.endswith("_host")} - {"bind_host", "public_host"}
    assert {k.lower() for k in hosts} - {"bind_host"} == settings
    running = long_running(compose_doc)
    for variable, host in hosts.items():
        if variable == "BIND_HOST":
            continue
        assert host in running, f"{variable}={host} is not a long-running service"
        # POSTGRES_HOST names a container of postgres, SPARK_CONNECT_HOST one of spark.
        setting = variable.removesuffix("_HOST").lower().replace("_", "-")
        assert load(setting).name == load(host).name, variable


def test_every_host_the_code_asks_for_is_a_setting(root: Path) -> None:
    # Settings.host(NAME) falls back to BIND_HOST for a name without a NAME_host field:
    # in a container that is 0.0.0.0, the container itself.
    asked = {name for folder in ("src", "serving") for path in (root / folder).rglob("*.py")
             for name in re.findall(r"\.host\(\s*[\"']([a-z_]+)[\"']\s*\)", path.read_text())}
    assert asked
    assert {n for n in asked if f"{n}_host" not in Settings.model_fields} == set()


def test_state_lives_in_volumes_where_the_native_service_keeps_it(compose_doc: dict[str, Any]) -> None:
    declared = set(compose_doc["volumes"])
    data = f"{STATE}/data/"
    for name, svc in compose_doc["services"].items():
        for mount in svc.get("volumes", []):
            source, target, *_ = str(mount).split(":")
            if source.startswith((".", "/")):
                continue  # a folder of the checkout (certs/)
            assert source in declared, f"{name}: volume {source} is not declared"
            if target.startswith(data):
                # Context.data_dir(service): STATE/data/<the service running here>.
                assert target[len(data):].split("/")[0] == load(name).name, f"{name}: {mount}"


def test_the_ports_overlay_publishes_settings_ports_on_loopback(
        root: Path, compose_doc: dict[str, Any]) -> None:
    overlay = yaml.safe_load((root / "docker-compose.ports.yml").read_text())
    for name, svc in overlay["services"].items():
        assert name in long_running(compose_doc), f"{name} is not a service of docker-compose.yml"
        for mapping in svc["ports"]:
            address, host, container = re.split(r":(?![^{]*\})", mapping)
            assert address == "127.0.0.1", f"{name}: {mapping}"
            assert host == container, f"{name}: {mapping}"
            [variable] = VARIABLE.findall(container)
            assert variable.lower() in Settings.model_fields, f"{name}: {variable} is no setting"


# --- variables -----------------------------------------------------------------------


def test_every_variable_used_is_documented(root: Path, versions: dict[str, str]) -> None:
    text = (root / "docker-compose.yml").read_text()
    example = parse((root / ".env.example").read_text())
    used = set(VARIABLE.findall(text))
    assert used - set(example) - set(versions) == set()
    # A variable .env may leave blank needs a default in the file (${NAME:-default}).
    for match in re.finditer(r"(?<!\$)\$\{([A-Z0-9_]+)(:-[^}]+)?\}", text):
        name, default = match.groups()
        if not example.get(name) and name not in GENERATORS and name not in versions:
            assert default, f"${{{name}}} may be blank in .env and has no default"


def test_env_example_holds_no_usable_secret(root: Path) -> None:
    example = parse((root / ".env.example").read_text())
    assert {k: example[k] for k in GENERATORS if example.get(k)} == {}


@pytest.mark.parametrize(("image", "package", "variable"), [
    ("mlflow", "mlflow", "MLFLOW_VERSION"),
    ("airflow", "apache-airflow", "AIRFLOW_VERSION"),
])
def test_image_requirements_pin_the_versions_file(
    root: Path, versions: dict[str, str], image: str, package: str, variable: str
) -> None:
    text = (root / "docker" / image / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", text, re.M))
    assert pins.get(package) == versions[variable]
    unpinned = [line for line in text.splitlines()
                if line.strip() and not line.startswith("#") and "==" not in line]
    assert unpinned == []


def test_every_init_job_is_awaited_by_another_service(compose_doc: dict[str, Any]) -> None:
    # `up --wait` fails on a one-shot container that exited when nothing depends on it
    # (seen with Compose 2.40: "container skiff-catalog-init-1 exited (0)", exit 1).
    services = compose_doc["services"]
    awaited = {dep for svc in services.values() for dep in (svc.get("depends_on") or {})}
    assert {n for n, svc in services.items() if svc.get("restart") == "no"} - awaited == set()
