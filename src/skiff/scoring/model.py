"""The model a batch is scored with: ``NAME@ALIAS`` resolved to one version, its ONNX file and schema.

The registry calls and the schema lookup are the model server's
(serving/model_server/registry.py, model.py), so a batch is validated and scored
exactly as that version's REST predictions are.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from serving.model_server.model import LoadError, feature_schema
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


def resolve(tracking_uri: str, ref: str) -> ModelVersion:
    """The version ``ref`` points to now (no download); ModelError if there is none."""
    name, alias = parse_ref(ref)
    registry = Registry(tracking_uri)
    try:
        mv = registry.resolve(name, alias)
    except RegistryError as exc:
        raise ModelError(f"{name}@{alias}: the registry did not answer: {exc}") from exc
    finally:
        registry.close()
    if mv is None:
        raise ModelError(f"no model version {name}@{alias} in the registry at {tracking_uri} "
                         "(unknown model or alias)")
    return mv


def load(tracking_uri: str, ref: str) -> ScoringModel:
    """The version ``ref`` points to now, downloaded; ModelError if there is none."""
    name, alias = parse_ref(ref)
    registry = Registry(tracking_uri)
    try:
        mv = registry.resolve(name, alias)
        if mv is None:
            raise ModelError(f"no model version {name}@{alias} in the registry at {tracking_uri} "
                             "(unknown model or alias)")
        uri = registry.download_uri(mv.name, mv.version)

        def fetch(relative: str) -> bytes:
            return registry.artifact(uri, relative)

        mlmodel = yaml.safe_load(fetch("MLmodel"))
        onnx_flavor = (mlmodel.get("flavors") or {}).get("onnx")
        if not onnx_flavor:
            raise ModelError(f"{name} version {mv.version} has no onnx flavor "
                             f"(flavors: {sorted(mlmodel.get('flavors') or {})})")
        schema = feature_schema(mlmodel, fetch)
        onnx = fetch(onnx_flavor.get("data", "model.onnx"))
    except LoadError as exc:
        raise ModelError(f"{name}@{alias}: {exc}") from exc
    except RegistryError as exc:
        raise ModelError(f"{name}@{alias}: the registry did not answer: {exc}") from exc
    finally:
        registry.close()
    return ScoringModel(name, alias, mv.version, mv.run_id, mv.source, onnx, schema)
