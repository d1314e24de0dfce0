"""Request parsing, validation and serialisation of the model server, without Flask."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from serving.model_server import api
from skiff.bracelet.features import FeatureSchema

pytestmark = pytest.mark.unit

SCHEMA = FeatureSchema()
RECORD: dict[str, Any] = {"age": 63, "sex": 1, "cp": 1, "trestbps": 145, "chol": 233, "fbs": 1,
                          "restecg": 2, "thalch": 150, "exang": 0, "oldpeak": 2.3, "slope": 3,
                          "ca": 0, "thal": 6}


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_one_record_is_a_single_request() -> None:
    req = api.parse_predict(body(RECORD))
    assert req.single and req.records == [RECORD]


@pytest.mark.parametrize("doc", [[RECORD, RECORD], {"records": [RECORD, RECORD]}])
def test_a_list_or_records_object_is_a_batch(doc: Any) -> None:
    req = api.parse_predict(body(doc))
    assert not req.single and req.records == [RECORD, RECORD]


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"not json", b"{\"age\": 1", b"\xff\xfe", b"3", b"\"a string\"", b"null", b"true",
    b"[]", b"{\"records\": []}", b"{\"records\": {}}", b"{\"records\": [], \"more\": 1}",
    b"{\"age\": NaN}", b"[Infinity]",
])
def test_what_is_not_a_record_or_batch_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(api.ApiError) as caught:
        api.parse_predict(raw)
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


def test_too_many_records_is_a_bad_request() -> None:
    with pytest.raises(api.ApiError) as caught:
        api.parse_predict(body([RECORD] * (api.MAX_RECORDS + 1)))
    assert caught.value.status == 400


def test_valid_records_come_back_clean_and_in_order() -> None:
    other = {**RECORD, "age": 40, "chol": None}
    clean = api.validate_records(SCHEMA, [RECORD, other])
    assert [c["age"] for c in clean] == [63.0, 40.0]
    assert clean[1]["chol"] is None
    assert SCHEMA.row(clean[0])[0] == 63.0


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"age": None}, "age", "may not be null"),
    ({"chol": "233"}, "chol", "must be a number"),
    ({"sex": True}, "sex", "must be a number"),
    ({"trestbps": 301}, "trestbps", "between"),
    ({"cp": 5}, "cp", "one of"),
    ({"ca": 1.5}, "ca", "whole number"),
    ({"weight": 80}, "weight", "not a feature"),
    ({"age": 10**400}, "age", "must be between 1 and 120"),
])
def test_each_bad_field_is_named_under_its_record_index(change: dict[str, Any], field: str,
                                                        reason: str) -> None:
    with pytest.raises(api.ApiError) as caught:
        api.validate_records(SCHEMA, [RECORD, {**RECORD, **change}])
    err = caught.value
    assert (err.status, err.code) == (422, "invalid_input")
    assert list(err.fields) == ["1"]
    assert reason in err.fields["1"][field]


def test_a_missing_field_and_a_non_object_record_are_invalid_input() -> None:
    missing = {k: v for k, v in RECORD.items() if k != "thal"}
    with pytest.raises(api.ApiError) as caught:
        api.validate_records(SCHEMA, [missing, 7, RECORD])
    assert caught.value.fields == {"0": {"thal": "is missing"},
                                   "1": {"$": "a record must be a JSON object, got int"}}
    assert caught.value.message.startswith("2 of 3 records are invalid")


def test_error_body_is_one_shape() -> None:
    err = api.ApiError(422, "invalid_input", "bad", {"0": {"age": "is missing"}})
    assert api.error_body(err) == {"error": {"code": "invalid_input", "message": "bad",
                                             "fields": {"0": {"age": "is missing"}}}}
    assert api.error_body(api.bad_request("no")) == {"error": {"code": "bad_request", "message": "no"}}


def test_a_single_record_answer_also_has_the_flat_fields() -> None:
    outcome = api.Outcome(uuid.uuid4(), 1, 0.75)
    single = api.predictions_body("bracelet", "3", [outcome], single=True)
    assert single["model"] == {"name": "bracelet", "version": "3"}
    assert single["predictions"] == [outcome.to_json()]
    assert (single["request_id"], single["prediction"], single["probability"]) == (
        str(outcome.request_id), 1, 0.75)
    batch = api.predictions_body("bracelet", "3", [outcome, outcome], single=False)
    assert "prediction" not in batch and len(batch["predictions"]) == 2


def test_feedback_parses_a_request_id_and_label() -> None:
    rid = uuid.uuid4()
    assert api.parse_feedback(body({"request_id": str(rid), "label": 1})) == api.Feedback(rid, 1)


@pytest.mark.parametrize(("doc", "fields"), [
    ({"label": 1}, {"request_id"}),
    ({"request_id": "nope", "label": 1}, {"request_id"}),
    ({"request_id": 5, "label": 1}, {"request_id"}),
    ({"request_id": str(uuid.uuid4()), "label": 2}, {"label"}),
    ({"request_id": str(uuid.uuid4()), "label": True}, {"label"}),
    ({"request_id": str(uuid.uuid4()), "label": 0, "note": "x"}, {"note"}),
])
def test_bad_feedback_is_invalid_input(doc: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(api.ApiError) as caught:
        api.parse_feedback(body(doc))
    assert (caught.value.status, set(caught.value.fields)) == (422, fields)


def test_feedback_that_is_not_an_object_is_a_bad_request() -> None:
    with pytest.raises(api.ApiError) as caught:
        api.parse_feedback(b"[1]")
    assert caught.value.status == 400
