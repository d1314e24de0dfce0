"""docker-compose.yml checked without a Docker engine: spec, versions, health, variables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import compose_spec
import pytest
import yaml

from skiff.envfile import parse
from skiff.native.context import Context
from skiff.services import REGISTRY

pytestmark = pytest.mark.unit

VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
# Official images and the versions.env variable that must be their tag.
OFFICIAL_IMAGES = {
    "postgres": "POSTGRES_VERSION",
    "versity/versitygw": "VERSITYGW_VERSION",
    "apache/kafka": "KAFKA_VERSION",
    "cassandra": "CASSANDRA_VERSION",
    "traefik": "TRAEFIK_VERSION",
    "quay.io/keycloak/keycloak": "KEYCLOAK_VERSION",
    "redis": "REDIS_VERSION",
    "prom/prometheus": "PROMETHEUS_VERSION",
}


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
    from skiff.envfile import GENERATORS

    values = {k: v or ("generated-secret" if k in GENERATORS else "")
              for k, v in parse((root / ".env.example").read_text()).items()}
    text = interpolate((root / "docker-compose.yml").read_text(), {**values, **versions})
    # PyYAML resolves the `<<` merge keys, as Compose does; the spec parser does not.
    compose = compose_spec.PyCompose.from_json(json.dumps(yaml.safe_load(text)))
    compose.validate()
    assert compose.name == "skiff"


def test_official_images_are_tagged_from_the_versions_file(
    compose_doc: dict[str, Any], versions: dict[str, str]
) -> None:
    seen = set()
    for name, svc in compose_doc["services"].items():
        image = svc.get("image", "")
        repo, _, tag = image.partition(":")
        if repo in OFFICIAL_IMAGES:
            var = OFFICIAL_IMAGES[repo]
            assert var in tag, f"{name}: image {image} is not tagged with ${{{var}}}"
            assert var in versions
            seen.add(repo)
    assert seen == set(OFFICIAL_IMAGES)


def test_built_images_take_their_base_version_from_the_versions_file(
    compose_doc: dict[str, Any], versions: dict[str, str], root: Path
) -> None:
    for name, svc in compose_doc["services"].items():
        build = svc.get("build")
        if not build:
            continue
        for arg, value in build.get("args", {}).items():
            assert value == f"${{{arg}}}", f"{name}: build arg {arg} must be ${{{arg}}}"
            assert arg in versions, f"{name}: build arg {arg} is not in versions.env"
        dockerfile = (root / build["dockerfile"]).read_text()
        assert "FROM" in dockerfile


def test_every_long_running_service_has_a_health_check(compose_doc: dict[str, Any]) -> None:
    missing = [name for name, svc in compose_doc["services"].items()
               if svc.get("restart") != "no" and "healthcheck" not in svc]
    assert missing == []


def test_dependencies_wait_for_health_or_completion(compose_doc: dict[str, Any]) -> None:
    allowed = {"service_healthy", "service_completed_successfully"}
    services = compose_doc["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] in allowed, f"{name} -> {dep}: {cond}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s missing check"
            else:
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot job"


def test_no_service_waits_with_sleep(root: Path) -> None:
    commands = [line for line in (root / "docker-compose.yml").read_text().splitlines()
                if not line.lstrip().startswith("#")]
    assert [line for line in commands if re.search(r"\bsleep\b", line)] == []


def test_every_variable_used_is_documented(root: Path, versions: dict[str, str]) -> None:
    used = set(VARIABLE.findall((root / "docker-compose.yml").read_text()))
    documented = set(parse((root / ".env.example").read_text())) | set(versions)
    # SKIFF_IMAGE_TAG is optional, defaulted in the file, and documented there.
    assert used - documented - {"SKIFF_IMAGE_TAG"} == set()


def test_env_example_holds_no_usable_secret(root: Path) -> None:
    from skiff.envfile import GENERATORS

    example = parse((root / ".env.example").read_text())
    assert {k: example[k] for k in GENERATORS if example.get(k)} == {}


def test_every_native_program_is_a_compose_service(compose_doc: dict[str, Any]) -> None:
    # The same word everywhere: `skiff logs NAME` and `docker compose logs NAME`.
    ctx = Context.discover(Path(__file__).parent)
    programs = {p.name for svc in REGISTRY.values() for p in svc.programs(ctx)}
    assert programs - set(compose_doc["services"]) == set()


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
