"""The served model: loaded from ``models:/NAME@ALIAS``, swapped in without a restart.

A :class:`ModelHolder` keeps one reference to the current :class:`LoadedModel`.
A background thread resolves the alias every few seconds; when it points to
another version, the thread downloads it, builds its ONNX session, checks it with
a trial prediction, and only then replaces the reference with one assignment.
A request reads the reference once and uses that model throughout (validation,
prediction, the version it reports and captures), so it never sees a half-loaded
model or mixes two versions. A version that fails to load leaves the old one serving.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import yaml

from serving.model_server.registry import ModelVersion, Registry, RegistryError
from skiff.bracelet.features import FeatureSchema

log = logging.getLogger(__name__)


class Predictor(Protocol):
    def predict(self, rows: Sequence[Sequence[float]]) -> list[tuple[int, float]]: ...


@dataclass(frozen=True)
class OnnxFile:
    """The served version's ONNX file as the registry holds it, for devices to download."""

    data: bytes
    # Where it lies under the version's artifacts (MLmodel's onnx flavor ``data``).
    path: str = "model.onnx"
    # MLmodel's ``signature`` (inputs/outputs as MLflow logged them), when there is one.
    signature: dict[str, Any] | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    schema: FeatureSchema
    predictor: Predictor
    loaded_at: float = field(default_factory=time.time)
    onnx: OnnxFile | None = None

    def predict(self, clean: Sequence[dict[str, float | None]]) -> list[tuple[int, float]]:
        return self.predictor.predict([self.schema.row(c) for c in clean])


class LoadError(RuntimeError):
    """A version could not be loaded; the one being served stays."""


def feature_schema(mlmodel: dict[str, Any], fetch: Callable[[str], bytes]) -> FeatureSchema:
    """The schema logged with the model: MLmodel's ``metadata.feature_schema``.

    Falls back to a ``feature_schema.json`` artifact next to it. No schema is an
    error: validating against the server's own idea of the features is exactly
    what the schema travelling with the model is there to prevent.
    """
    doc = (mlmodel.get("metadata") or {}).get("feature_schema")
    if doc is None:
        try:
            doc = yaml.safe_load(fetch("feature_schema.json"))  # JSON is YAML
        except RegistryError as exc:
            raise LoadError("the model has no metadata.feature_schema in MLmodel "
                            "and no feature_schema.json") from exc
    try:
        return FeatureSchema.from_json(doc)
    except (KeyError, TypeError) as exc:
        raise LoadError(f"the model's feature schema is malformed: {exc}") from exc


@dataclass(frozen=True)
class OnnxArtifacts:
    """What a version needs to be scored: its MLmodel, feature schema and ONNX file."""

    mlmodel: dict[str, Any]
    schema: FeatureSchema
    path: str
    onnx: bytes


def fetch_onnx(registry: Registry, mv: ModelVersion) -> OnnxArtifacts:
    """Download one version's ONNX file and feature schema (REST serving and batch scoring)."""
    uri = registry.download_uri(mv.name, mv.version)

    def fetch(relative: str) -> bytes:
        return registry.artifact(uri, relative)

    mlmodel = yaml.safe_load(fetch("MLmodel"))
    onnx_flavor = (mlmodel.get("flavors") or {}).get("onnx")
    if not onnx_flavor:
        raise LoadError(f"{mv.name} version {mv.version} has no onnx flavor "
                        f"(flavors: {sorted(mlmodel.get('flavors') or {})})")
    schema = feature_schema(mlmodel, fetch)
    path = onnx_flavor.get("data", "model.onnx")
    return OnnxArtifacts(mlmodel, schema, path, fetch(path))


def load_version(registry: Registry, mv: ModelVersion) -> LoadedModel:
    """Download and build one version, ready to serve (the slow part of a swap)."""
    # Imported here so that this module, and the unit tests of the holder, need
    # neither numpy nor onnxruntime.
    from serving.model_server.session import OnnxPredictor

    files = fetch_onnx(registry, mv)
    mlmodel, schema, onnx_path, onnx_bytes = files.mlmodel, files.schema, files.path, files.onnx
    try:
        predictor = OnnxPredictor(onnx_bytes, len(schema.names))
        # A trial run before the swap: a model that loads but cannot predict never serves.
        predictor.predict([[f.minimum for f in schema.features]])
    except RegistryError:
        raise
    except Exception as exc:
        raise LoadError(f"{mv.name} version {mv.version}: {type(exc).__name__}: {exc}") from exc
    signature = mlmodel.get("signature")
    onnx = OnnxFile(onnx_bytes, onnx_path, signature if isinstance(signature, dict) else None)
    return LoadedModel(mv.name, mv.version, schema, predictor, onnx=onnx)


class ModelHolder:
    """The current model and the thread that keeps it in step with the alias.

    ``resolve`` returns the version the alias points to (None: no such alias yet);
    ``load`` builds it. Both are injected so the swap logic is testable without MLflow.
    """

    def __init__(self, resolve: Callable[[], ModelVersion | None],
                 load: Callable[[ModelVersion], LoadedModel], interval: float,
                 on_swap: Callable[[LoadedModel], None] = lambda m: None,
                 on_error: Callable[[Exception], None] = lambda exc: None) -> None:
        self._resolve = resolve
        self._load = load
        self.interval = interval
        self._on_swap = on_swap
        self._on_error = on_error
        # The only shared state: replaced whole by the refresh thread, read whole by requests.
        self._current: LoadedModel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def refresh(self) -> bool:
        """Resolve the alias; load and swap in its version if it changed. True if swapped."""
        mv = self._resolve()
        current = self._current
        if mv is None or (current is not None and current.version == mv.version):
            return False
        new = self._load(mv)
        # One reference assignment (atomic in CPython): a request sees the old
        # model or the new one, whole. The old one is freed when its last request ends.
        self._current = new
        self._on_swap(new)
        log.info("serving %s version %s (was %s)", new.name, new.version,
                 current.version if current else "none")
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self.last_error = None
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                # Once per distinct problem: MLflow being down for an hour is one log line.
                if message != self.last_error:
                    log.warning("model refresh failed, still serving %s: %s",
                                self._current.version if self._current else "nothing", message)
                self.last_error = message
                self._on_error(exc)
            self._stop.wait(self.interval)

    def start(self) -> None:
        # The first load happens in the thread too: workers boot (and /healthz
        # answers) even while MLflow is down or no model is registered yet.
        self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
