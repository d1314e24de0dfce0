"""Filling a request from a patient's profile, and the model download, without Ignite or MLflow.

What Ignite itself does (lookups, reconnects, the loading DAG) is tested against the
live node in test_online_features.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from flask import Flask, request

from serving.model_server import api, download
from serving.model_server.model import LoadedModel, OnnxFile
from serving.model_server.profiles import ProfileStoreUnavailable
from skiff.bracelet import profiles
from skiff.bracelet.features import NAMES, FeatureSchema

pytestmark = pytest.mark.unit

SCHEMA = FeatureSchema()
PROFILE: dict[str, Any] = {"age": 63, "sex": 1, "cp": 1, "trestbps": 145, "chol": 233, "fbs": 1,
                           "restecg": 2, "thalch": 150, "exang": 0, "oldpeak": 2.3, "slope": 3,
                           "ca": 0, "thal": 6}


class Lookups:
    """Records the ids asked for; answers from a dict (this is the lookup callable, not Ignite)."""

    def __init__(self, known: dict[str, dict[str, Any]]) -> None:
        self.known = known
        self.asked: list[list[str]] = []

    def __call__(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        self.asked.append(ids)
        return {i: self.known[i] for i in ids if i in self.known}


def test_profile_and_vitals_split_the_features_between_them() -> None:
    assert set(profiles.PROFILE_FEATURES).isdisjoint(profiles.VITALS)
    assert set(profiles.PROFILE_FEATURES) | set(profiles.VITALS) == set(NAMES)


def test_request_fields_win_over_the_profile_null_included() -> None:
    filled = profiles.fill({"patient_id": "7", "thalch": 99, "chol": None}, PROFILE)
    assert filled["thalch"] == 99 and filled["chol"] is None
    assert filled["age"] == 63 and "patient_id" not in filled
    assert set(filled) == set(NAMES)


def test_only_the_models_features_come_from_the_profile() -> None:
    filled = profiles.fill({"patient_id": "7"}, {**PROFILE, "weight": 80}, names=("age", "sex"))
    assert filled == {"age": 63, "sex": 1}


def test_records_without_an_id_cost_no_lookup() -> None:
    lookup = Lookups({})
    records = [PROFILE, {**PROFILE, "age": 40}]
    assert api.fill_records(records, lookup, NAMES) == records
    assert lookup.asked == []


def test_an_id_alone_becomes_the_full_record_and_validates() -> None:
    lookup = Lookups({"7": PROFILE})
    filled = api.fill_records([{"patient_id": "7"}], lookup, NAMES)
    assert api.validate_records(SCHEMA, filled) == api.validate_records(SCHEMA, [PROFILE])


def test_a_batch_asks_once_for_each_distinct_id_and_keeps_order() -> None:
    lookup = Lookups({"7": PROFILE, "8": {**PROFILE, "age": 50}})
    records = [{"patient_id": "8"}, PROFILE, {"patient_id": "7", "age": 70}, {"patient_id": "8"}]
    filled = api.fill_records(records, lookup, NAMES)
    assert lookup.asked == [["8", "7"]]
    assert [r["age"] for r in filled] == [50, 63, 70, 50]


def test_an_unknown_id_is_a_404_naming_the_record_and_the_id() -> None:
    lookup = Lookups({"7": PROFILE})
    with pytest.raises(api.ApiError) as caught:
        api.fill_records([{"patient_id": "7"}, {"patient_id": "nobody-42"}], lookup, NAMES)
    err = caught.value
    assert (err.status, err.code) == (404, "unknown_patient")
    assert "'nobody-42'" in err.message
    assert err.fields == {"1": {"patient_id": "no profile for patient 'nobody-42'"}}


@pytest.mark.parametrize("bad", [17, "", "   ", None, ["7"], "x" * 129])
def test_a_malformed_id_is_a_422(bad: Any) -> None:
    lookup = Lookups({"7": PROFILE})
    with pytest.raises(api.ApiError) as caught:
        api.fill_records([{"patient_id": "7"}, {"patient_id": bad}], lookup, NAMES)
    err = caught.value
    assert (err.status, err.code) == (422, "invalid_input")
    assert list(err.fields) == ["1"] and "patient_id" in err.fields["1"]
    assert lookup.asked == []


def test_an_unreachable_store_is_a_503_with_the_reason() -> None:
    def down(ids: list[str]) -> dict[str, dict[str, Any]]:
        raise ProfileStoreUnavailable("Ignite at 127.0.0.1:10800: ReconnectError: Can not connect.")

    with pytest.raises(api.ApiError) as caught:
        api.fill_records([{"patient_id": "7"}], down, NAMES)
    err = caught.value
    assert (err.status, err.code) == (503, "profiles_unavailable")
    assert "Can not connect" in err.message


def test_a_filled_record_with_a_bad_override_still_fails_validation() -> None:
    filled = api.fill_records([{"patient_id": "7", "thalch": 999}], Lookups({"7": PROFILE}), NAMES)
    with pytest.raises(api.ApiError) as caught:
        api.validate_records(SCHEMA, filled)
    assert "thalch" in caught.value.fields["0"]


def test_the_dataset_gives_one_valid_profile_per_patient() -> None:
    candidates = profiles.dataset_profiles()
    good, bad = profiles.checked(candidates)
    assert len(candidates) == 920 and bad == {}
    assert json.loads(good["1"])["age"] == 63


def test_an_invalid_profile_is_rejected_with_its_reasons() -> None:
    good, bad = profiles.checked({"1": PROFILE, "2": {**PROFILE, "age": None, "cp": 9}})
    assert list(good) == ["1"]
    assert set(bad["2"]) == {"age", "cp"}


def loaded(data: bytes = b"onnx-bytes") -> LoadedModel:
    return LoadedModel("bracelet", "3", SCHEMA, predictor=None,  # type: ignore[arg-type]
                       onnx=OnnxFile(data, "model.onnx", {"inputs": "[]"}))


def test_the_model_description_names_the_file_its_digest_and_the_schema() -> None:
    info = download.model_info(loaded())
    assert info["version"] == "3"
    assert info["onnx"]["sha256"] == hashlib.sha256(b"onnx-bytes").hexdigest()
    assert info["input"]["columns"] == list(NAMES)
    assert FeatureSchema.from_json(info["feature_schema"]) == SCHEMA


def test_the_download_is_the_file_with_its_version_and_an_etag() -> None:
    flask_app = Flask(__name__)
    with flask_app.test_request_context("/v1/model/onnx"):
        response = download.onnx_response(loaded(), request)
    assert response.status_code == 200 and response.get_data() == b"onnx-bytes"
    assert response.headers["X-Model-Version"] == "3"
    assert response.headers["ETag"] == f'"{hashlib.sha256(b"onnx-bytes").hexdigest()}"'
    etag = response.headers["ETag"]
    with flask_app.test_request_context("/v1/model/onnx", headers={"If-None-Match": etag}):
        again = download.onnx_response(loaded(), request)
    assert again.status_code == 304
    with flask_app.test_request_context("/v1/model/onnx", headers={"If-None-Match": '"old"'}):
        assert download.onnx_response(loaded(), request).status_code == 200


def test_a_model_without_its_file_is_a_503() -> None:
    model = LoadedModel("bracelet", "3", SCHEMA, predictor=None)  # type: ignore[arg-type]
    with pytest.raises(api.ApiError) as caught:
        download.model_info(model)
    assert caught.value.status == 503
