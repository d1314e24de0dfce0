"""The model holder's swap logic and the schema travelling with a model, with fakes for MLflow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import pytest

from serving.model_server.model import LoadedModel, LoadError, ModelHolder, feature_schema
from serving.model_server.registry import ModelVersion, RegistryError
from skiff.bracelet.features import FEATURES, FeatureSchema

pytestmark = pytest.mark.unit


class Constant:
    """A predictor that always answers its version's number as the probability."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, rows: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
        return [(int(self.p > 0.5), self.p) for _ in rows]


class FakeRegistry:
    def __init__(self) -> None:
        self.alias: str | None = None
        self.loads: list[str] = []
        self.broken: set[str] = set()
        self.load_seconds = 0.0

    def resolve(self) -> ModelVersion | None:
        return None if self.alias is None else ModelVersion("bracelet", self.alias, "", "")

    def load(self, mv: ModelVersion) -> LoadedModel:
        self.loads.append(mv.version)
        time.sleep(self.load_seconds)
        if mv.version in self.broken:
            raise LoadError(f"version {mv.version} is broken")
        return LoadedModel(mv.name, mv.version, FeatureSchema(), Constant(int(mv.version) / 10))


def holder_for(reg: FakeRegistry) -> ModelHolder:
    return ModelHolder(reg.resolve, reg.load, interval=0.01)


def test_nothing_is_served_until_the_alias_exists() -> None:
    reg = FakeRegistry()
    holder = holder_for(reg)
    assert not holder.refresh() and holder.current is None
    reg.alias = "1"
    assert holder.refresh()
    assert holder.current is not None and holder.current.version == "1"


def test_an_unchanged_alias_loads_nothing() -> None:
    reg = FakeRegistry()
    reg.alias = "1"
    holder = holder_for(reg)
    holder.refresh()
    holder.refresh()
    assert reg.loads == ["1"]


def test_a_moved_alias_swaps_the_model_and_can_move_back() -> None:
    reg = FakeRegistry()
    reg.alias = "1"
    holder = holder_for(reg)
    holder.refresh()
    reg.alias = "2"
    assert holder.refresh() and holder.current.version == "2"  # type: ignore[union-attr]
    reg.alias = "1"
    assert holder.refresh() and holder.current.version == "1"  # type: ignore[union-attr]


def test_a_version_that_fails_to_load_leaves_the_old_one_serving() -> None:
    reg = FakeRegistry()
    reg.alias = "1"
    holder = holder_for(reg)
    holder.refresh()
    reg.alias, reg.broken = "2", {"2"}
    with pytest.raises(LoadError):
        holder.refresh()
    assert holder.current.version == "1"  # type: ignore[union-attr]


def test_the_thread_survives_errors_and_picks_up_the_alias_later() -> None:
    reg = FakeRegistry()
    calls = {"n": 0}

    def flaky() -> ModelVersion | None:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RegistryError("MLflow is down")
        return reg.resolve()

    errors: list[Exception] = []
    holder = ModelHolder(flaky, reg.load, interval=0.01, on_error=errors.append)
    reg.alias = "4"
    holder.start()
    try:
        deadline = time.monotonic() + 5
        while holder.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        holder.stop()
    assert holder.current is not None and holder.current.version == "4"
    assert len(errors) == 2 and holder.last_error is None


def test_requests_during_a_slow_swap_always_see_one_whole_model() -> None:
    reg = FakeRegistry()
    reg.alias = "1"
    holder = holder_for(reg)
    holder.refresh()
    reg.load_seconds = 0.2
    seen: set[tuple[str, float]] = set()
    stop = threading.Event()

    def requests() -> None:
        while not stop.is_set():
            model = holder.current
            assert model is not None
            [(_, p)] = model.predict([{}])
            seen.add((model.version, p))

    reader = threading.Thread(target=requests)
    reader.start()
    reg.alias = "2"
    holder.refresh()
    time.sleep(0.05)
    stop.set()
    reader.join()
    # Never no model, never version 2's label with version 1's predictor.
    assert seen == {("1", 0.1), ("2", 0.2)}


def test_the_schema_comes_from_the_mlmodel_metadata() -> None:
    short = FeatureSchema(FEATURES[:3])
    mlmodel = {"flavors": {"onnx": {"data": "model.onnx"}},
               "metadata": {"feature_schema": short.to_json()}}
    assert feature_schema(mlmodel, lambda name: b"") == short


def test_the_schema_falls_back_to_a_feature_schema_json_artifact() -> None:
    doc = FeatureSchema().to_json()
    files = {"feature_schema.json": json.dumps(doc).encode()}
    assert feature_schema({"flavors": {}}, files.__getitem__) == FeatureSchema()


def test_a_model_without_a_schema_is_refused() -> None:
    def missing(name: str) -> bytes:
        raise RegistryError(f"{name}: 404")

    with pytest.raises(LoadError, match="feature_schema"):
        feature_schema({"metadata": {"other": 1}}, missing)
    with pytest.raises(LoadError, match="malformed"):
        feature_schema({"metadata": {"feature_schema": {"fields": []}}}, missing)
