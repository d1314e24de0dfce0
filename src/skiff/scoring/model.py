"""The model a batch is scored with: ``NAME@ALIAS`` resolved to one version, its ONNX file and schema.

The registry calls and the schema lookup are the model server's
(serving/model_server/registry.py, model.py), so a batch is validated and scored
exactly as that version's REST predictions are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from serving.model_server.model import LoadError, fetch_onnx
from serving.model_server.registry import ModelVersion, Registry, RegistryError
from skiff.bracelet.features import FeatureSchema


class ModelError(ValueError):
    """The model reference is malformed, unknown, or its version cannot be scored with."""


@dataclass(frozen=True)
class ScoringModel:
    name: str
    alias: str
    version: str
    run_id: str
    source: str
    onnx: bytes
    schema: FeatureSchema


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@ALIAS`` -> (name, alias)."""
    name, at, alias = ref.partition("@")
    if not at or not name.strip() or not alias.strip() or "@" in alias:
        raise ModelError(f"--model must be NAME@ALIAS (e.g. bracelet@champion), got {ref!r}")
    return name.strip(), alias.strip()


@contextmanager
def _registry(tracking_uri: str, name: str, alias: str) -> Iterator[Registry]:
    """The registry, closed afterwards; its errors become ModelErrors naming NAME@ALIAS."""
    registry = Registry(tracking_uri)
    try:
        yield registry
    except LoadError as exc:
        raise ModelError(f"{name}@{alias}: {exc}") from exc
    except RegistryError as exc:
        raise ModelError(f"{name}@{alias}: the registry did not answer: {exc}") from exc
    finally:
        registry.close()


def _version(registry: Registry, tracking_uri: str, name: str, alias: str) -> ModelVersion:
    mv = registry.resolve(name, alias)
    if mv is None:
        raise ModelError(f"no model version {name}@{alias} in the registry at {tracking_uri} "
                         "(unknown model or alias)")
    return mv


def resolve(tracking_uri: str, ref: str) -> ModelVersion:
    """The version ``ref`` points to now (no download); ModelError if there is none."""
    name, alias = parse_ref(ref)
    with _registry(tracking_uri, name, alias) as registry:
        return _version(registry, tracking_uri, name, alias)


def load(tracking_uri: str, ref: str) -> ScoringModel:
    """The version ``ref`` points to now, downloaded; ModelError if there is none."""
    name, alias = parse_ref(ref)
    with _registry(tracking_uri, name, alias) as registry:
        mv = _version(registry, tracking_uri, name, alias)
        files = fetch_onnx(registry, mv)
    return ScoringModel(name, alias, mv.version, mv.run_id, mv.source, files.onnx, files.schema)
