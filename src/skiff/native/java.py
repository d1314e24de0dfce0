"""The Java runtime that Kafka and Cassandra run on: JAVA_HOME's, else the one on PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.native.installing import InstallError, maven_jars

if TYPE_CHECKING:
    from skiff.native.context import Context


# The runtime every JVM service runs on, from Debian.
JAVA_PACKAGES = ("openjdk-17-jre-headless",)


def find_java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def require_java(service: str) -> str:
    """The java binary, or an error naming the service that needs it."""
    found = find_java()
    if found is None:
        raise InstallError(f"{service}: `java` not found; install a Java 17+ runtime "
                           "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    return found


def java_command() -> str:
    """For program definitions, which must not fail: ``up`` checks Java at install time."""
    return find_java() or "java"


def install_jars(ctx: Context, component: str, version: str, properties: dict[str, str]) -> Path:
    """A JVM component's jars from Maven Central, by its pom in ``native/poms/<component>.xml``.

    Returns the folder of jars, the component's classpath.
    """
    require_java(component)
    pom = Path(__file__).parent / "poms" / f"{component}.xml"
    return maven_jars(component, pom, ctx.component(component, version), properties)
