"""The bracelet scenario's shared contracts: feature encoding, validation, events."""

from __future__ import annotations

import math
import uuid

import pytest

from skiff.bracelet import events
from skiff.bracelet.features import (
    NAMES,
    FeatureSchema,
    encode_row,
    is_holdout,
    label,
    load_encoded,
    load_raw,
)

pytestmark = pytest.mark.unit

CLEVELAND_FIRST = {"id": "1", "age": "63", "sex": "Male", "dataset": "Cleveland",
                   "cp": "typical angina", "trestbps": "145", "chol": "233", "fbs": "TRUE",
                   "restecg": "lv hypertrophy", "thalch": "150", "exang": "FALSE", "oldpeak": "2.3",
                   "slope": "downsloping", "ca": "0", "thal": "fixed defect", "num": "0"}


def test_symbolic_values_map_to_the_original_numeric_encoding() -> None:
    assert encode_row(CLEVELAND_FIRST) == {
        "age": 63.0, "sex": 1.0, "cp": 1.0, "trestbps": 145.0, "chol": 233.0, "fbs": 1.0,
        "restecg": 2.0, "thalch": 150.0, "exang": 0.0, "oldpeak": 2.3, "slope": 3.0,
        "ca": 0.0, "thal": 6.0}


def test_unmeasured_values_become_none_and_unknown_symbols_are_errors() -> None:
    assert encode_row({**CLEVELAND_FIRST, "ca": "", "thal": ""})["ca"] is None
    with pytest.raises(ValueError, match="cp: unknown value 'sometimes'"):
        encode_row({**CLEVELAND_FIRST, "cp": "sometimes"})


@pytest.mark.parametrize(("num", "expected"), [("0", 0), ("1", 1), ("4", 1)])
def test_label_is_healthy_only_for_num_zero(num: str, expected: int) -> None:
    assert label({**CLEVELAND_FIRST, "num": num}) == expected


def test_the_shipped_data_has_four_sites_and_every_row_validates() -> None:
    rows = load_raw()
    assert len(rows) == 920
    assert {r["dataset"] for r in rows} == {"Cleveland", "Hungary", "Switzerland", "VA Long Beach"}
    features, labels = load_encoded()
    schema = FeatureSchema()
    assert all(schema.validate(f)[1] == {} for f in features)
    assert set(labels) == {0, 1}


def test_holdout_is_a_fixed_fifth_of_cleveland() -> None:
    cleveland = load_raw(["cleveland"])
    held = [r["id"] for r in cleveland if is_holdout(r)]
    assert len(cleveland) == 304 and len(held) == 60
    assert held[:3] == ["5", "10", "15"]


def test_validation_reports_every_bad_field_whatever_the_order() -> None:
    record = dict(reversed(list(encode_row(CLEVELAND_FIRST).items())))
    clean, errors = FeatureSchema().validate(record)
    assert errors == {} and list(clean) == list(NAMES)
    bad = {**record, "age": "63", "sex": 2, "chol": 9999, "ca": 1.5, "colour": "red"}
    del bad["cp"]
    _, errors = FeatureSchema().validate(bad)
    assert errors == {
        "age": "must be a number, got str '63'",
        "sex": "must be one of [0, 1], got 2",
        "cp": "is missing",
        "chol": "must be between 0 and 700, got 9999",
        "ca": "must be a whole number, got 1.5",
        "colour": "is not a feature of this model",
    }


def test_null_is_allowed_only_where_a_site_may_not_measure() -> None:
    record = encode_row(CLEVELAND_FIRST)
    assert FeatureSchema().validate({**record, "thal": None})[1] == {}
    assert FeatureSchema().validate({**record, "age": None})[1] == {"age": "is required and may not be null"}
    assert FeatureSchema().validate({**record, "oldpeak": float("nan")})[1] == {
        "oldpeak": "must be a finite number, got nan"}


def test_model_row_is_in_schema_order_with_nan_for_missing() -> None:
    record = {**encode_row(CLEVELAND_FIRST), "ca": None}
    row = FeatureSchema().row(record)
    assert row[0] == 63.0 and math.isnan(row[NAMES.index("ca")])


def test_schema_survives_its_json_round_trip() -> None:
    schema = FeatureSchema()
    assert FeatureSchema.from_json(schema.to_json()) == schema


def test_events_round_trip_and_bad_messages_say_why() -> None:
    pred = events.Prediction(uuid.uuid4(), events.now(), "bracelet", "3",
                             {"age": 63.0, "ca": None}, 1, 0.75)
    key, value = events.encode(pred)
    assert key == str(pred.request_id).encode()
    assert events.decode(value) == pred
    lab = events.Label(pred.request_id, events.now(), 1)
    assert events.decode(events.encode(lab)[1]) == lab
    for raw, reason in [(b"{", "not JSON"), (b"[1]", "not a JSON object"),
                        (b'{"type": "label", "request_id": "%s", "time": "2026-01-01T00:00:00"}'
                         % str(pred.request_id).encode(), "no time zone"),
                        (b'{"type": "x", "request_id": "%s", "time": "2026-01-01T00:00:00+00:00"}'
                         % str(pred.request_id).encode(), "unknown event type 'x'")]:
        with pytest.raises(events.BadEvent, match=reason):
            events.decode(raw)
