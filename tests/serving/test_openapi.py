"""The OpenAPI document is generated from the feature schema the server validates with."""

from __future__ import annotations

import pytest

from serving.model_server.openapi import document
from skiff.bracelet.features import FEATURES, NAMES, FeatureSchema

pytestmark = pytest.mark.unit


def test_every_feature_is_listed_with_its_range_and_nullability() -> None:
    doc = document(FeatureSchema(), "bracelet", "3")
    record = doc["components"]["schemas"]["Record"]
    assert doc["openapi"].startswith("3.1")
    assert list(record["properties"]) == list(NAMES) == record["required"]
    assert record["additionalProperties"] is False
    props = record["properties"]
    assert props["age"]["type"] == "integer" and props["age"]["minimum"] == 1
    assert props["chol"]["type"] == ["number", "null"] and props["chol"]["maximum"] == 700
    assert props["sex"]["enum"] == [0, 1]
    assert props["thal"]["enum"] == [3, 6, 7, None]
    assert "bracelet version 3" in doc["info"]["description"]


def test_the_document_follows_the_served_schema() -> None:
    doc = document(FeatureSchema(FEATURES[:2]), "bracelet", None)
    assert list(doc["components"]["schemas"]["Record"]["properties"]) == ["age", "sex"]


def test_every_endpoint_is_described() -> None:
    paths = document(FeatureSchema(), "bracelet", "1")["paths"]
    assert set(paths) == {"/v1/predict", "/v1/feedback", "/v1/model", "/v1/model/onnx", "/healthz",
                          "/readyz", "/metrics", "/openapi.json"}
    assert {"200", "400", "404", "422", "503"} <= set(paths["/v1/predict"]["post"]["responses"])


def test_a_record_may_name_a_patient_instead_and_request_fields_win() -> None:
    schemas = document(FeatureSchema(), "bracelet", "1")["components"]["schemas"]
    by_patient = schemas["PatientRecord"]
    assert by_patient["required"] == ["patient_id"]
    assert set(by_patient["properties"]) == {"patient_id", *NAMES}
    assert "win over the profile" in by_patient["description"]
    refs = {r["$ref"] for r in schemas["Records"]["items"]["anyOf"]}
    assert refs == {"#/components/schemas/Record", "#/components/schemas/PatientRecord"}
