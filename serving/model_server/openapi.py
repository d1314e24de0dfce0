"""The API's OpenAPI 3.1 document, generated from the served model's feature schema.

Field names, ranges, codes and nullability come from the schema the server
validates against, so the document cannot drift from the validation.
"""

from __future__ import annotations

from typing import Any

from serving.model_server.api import MAX_RECORDS
from skiff import __version__
from skiff.bracelet import profiles
from skiff.bracelet.features import Feature, FeatureSchema


def feature_property(feat: Feature) -> dict[str, Any]:
    """JSON Schema of one feature's value, mirroring Feature.check."""
    prop: dict[str, Any] = {"description": feat.description}
    if feat.codes:
        codes = sorted(set(feat.codes.values()))
        prop["enum"] = [*codes, None] if feat.nullable else codes
        legend = ", ".join(f"{v} {k}" for k, v in sorted(feat.codes.items(), key=lambda kv: kv[1]))
        prop["description"] += f" ({legend})"
    else:
        kind = "integer" if feat.integer else "number"
        prop["type"] = [kind, "null"] if feat.nullable else kind
        prop["minimum"] = feat.minimum
        prop["maximum"] = feat.maximum
    if feat.nullable:
        prop["description"] += "; null when not measured"
    return prop


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str = "") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def document(schema: FeatureSchema, model_name: str, model_version: str | None) -> dict[str, Any]:
    record = {
        "type": "object",
        "description": "One patient's measurements in the UCI heart-disease encoding. Every feature "
                       "must be present; nullable ones may be null. Other keys are errors.",
        "properties": {f.name: feature_property(f) for f in schema.features},
        "required": list(schema.names),
        "additionalProperties": False,
    }
    by_patient = {
        "type": "object",
        "description": f"A patient's id, and any features measured now. The server fills the features "
                       f"left out from the patient's profile (Apache Ignite cache {profiles.CACHE}); "
                       "fields in the request win over the profile's, null included. Static record data "
                       f"({', '.join(profiles.PROFILE_FEATURES)}) normally comes from the profile; "
                       f"vitals ({', '.join(profiles.VITALS)}) from the device, the profile holding "
                       "the last clinical measurement. The filled record is validated and captured "
                       "as a full record would be.",
        "properties": {profiles.ID_FIELD: {"type": "string", "minLength": 1,
                                           "maxLength": profiles.MAX_ID_LENGTH,
                                           "description": "the id the profile is stored under"},
                       **{f.name: feature_property(f) for f in schema.features}},
        "required": [profiles.ID_FIELD],
        "additionalProperties": False,
    }
    any_record = {"anyOf": [{"$ref": "#/components/schemas/Record"},
                            {"$ref": "#/components/schemas/PatientRecord"}]}
    model_info = {
        "type": "object", "required": ["name", "version", "onnx", "input", "feature_schema"],
        "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "onnx": {"type": "object", "description": "GET path, artifact file name, SHA-256 and size "
                     "of the ONNX file", "properties": {
                         "path": {"type": "string"}, "file": {"type": "string"},
                         "sha256": {"type": "string"}, "size": {"type": "integer"}}},
            "input": {"type": "object", "description": "The ONNX input: float32 [N, columns] in this "
                      "column order, NaN where a nullable feature was not measured"},
            "outputs": {"type": "object"},
            "feature_schema": {"type": "object", "description": "Names, ranges, codes, nullability"},
            "signature": {"type": ["object", "null"], "description": "MLflow's logged signature"},
        },
    }
    prediction_fields: dict[str, Any] = {
        "request_id": {"type": "string", "format": "uuid",
                       "description": "Quote it in /v1/feedback to report the true label."},
        "prediction": {"type": "integer", "enum": [0, 1], "description": "1: heart disease"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "Probability of class 1"},
    }
    prediction = {"type": "object", "required": list(prediction_fields), "properties": prediction_fields}
    model_ref = {"type": "object", "required": ["name", "version"],
                 "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}
    served = f"{model_name} version {model_version}" if model_version else f"{model_name} (not loaded yet)"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Skiff model server",
            "version": __version__,
            "description": f"Predictions of the registered model {served}. Every prediction is "
                           "captured to Kafka (topic prediction-requests) with its request id.",
        },
        "paths": {
            "/v1/predict": {"post": {
                "summary": "Predict one record or a batch",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "anyOf": [
                        any_record,
                        {"type": "object", "required": ["records"], "additionalProperties": False,
                         "properties": {"records": {"$ref": "#/components/schemas/Records"}}},
                        {"$ref": "#/components/schemas/Records"},
                    ]}}}},
                "responses": {
                    "200": _json("PredictResponse", "Predictions in request order; a single record "
                                 "also gets request_id, prediction and probability at the top level"),
                    "400": _error("Not JSON, or not a record, a list of records or {\"records\": [...]} "
                                  "(code bad_request)"),
                    "413": _error("Body over 1 MiB (code too_large)"),
                    "404": _error("A record's patient_id has no profile (code unknown_patient); "
                                  "fields maps the record's index to {patient_id: reason}"),
                    "422": _error("A record is invalid (code invalid_input); fields maps each bad "
                                  "record's index to {feature: reason}"),
                    "503": _error("No model loaded yet (code no_model), or a record names a patient "
                                  "and the profile store cannot be read (code profiles_unavailable)"),
                },
            }},
            "/v1/model": {"get": {
                "summary": "The served version for devices that score themselves: file digest, "
                           "input layout, feature schema",
                "responses": {"200": _json("ModelInfo", "The version /v1/model/onnx returns"),
                              "503": _error("No model loaded yet (code no_model)")},
            }},
            "/v1/model/onnx": {"get": {
                "summary": "Download the served version's ONNX file as the registry holds it",
                "description": "Headers X-Model-Name, X-Model-Version, X-Model-SHA256; the ETag is "
                               "the SHA-256, so If-None-Match answers 304 until the champion changes.",
                "responses": {
                    "200": {"description": "The ONNX model",
                            "content": {"application/octet-stream": {"schema": {
                                "type": "string", "contentMediaType": "application/octet-stream"}}}},
                    "304": {"description": "Unchanged since the ETag given in If-None-Match"},
                    "503": _error("No model loaded yet (code no_model)")},
            }},
            "/v1/feedback": {"post": {
                "summary": "Report the true label of an earlier prediction",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                "responses": {
                    "202": _json("Accepted", "Queued for capture"),
                    "400": _error("Not a JSON object (code bad_request)"),
                    "422": _error("A field is invalid (code invalid_input); fields maps field to reason"),
                },
            }},
            "/healthz": {"get": {"summary": "The process is up",
                                 "responses": {"200": {"description": "Up"}}}},
            "/readyz": {"get": {"summary": "A model is loaded", "responses": {
                "200": _json("Ready", "Serving the model named in the body"),
                "503": _error("No model loaded (code no_model)")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
        },
        "components": {"schemas": {
            "Record": record,
            "PatientRecord": by_patient,
            "Records": {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS, "items": any_record},
            "ModelInfo": model_info,
            "Prediction": prediction,
            "Model": model_ref,
            "PredictResponse": {
                "type": "object", "required": ["model", "predictions"],
                "properties": {"model": {"$ref": "#/components/schemas/Model"},
                               "predictions": {"type": "array",
                                               "items": {"$ref": "#/components/schemas/Prediction"}},
                               **prediction_fields},
            },
            "Feedback": {
                "type": "object", "required": ["request_id", "label"], "additionalProperties": False,
                "properties": {"request_id": {"type": "string", "format": "uuid"},
                               "label": {"type": "integer", "enum": [0, 1]}},
            },
            "Accepted": {"type": "object", "properties": {"request_id": {"type": "string"},
                                                          "status": {"const": "accepted"}}},
            "Ready": {"type": "object", "properties": {"status": {"const": "ready"},
                                                       "model": {"$ref": "#/components/schemas/Model"}}},
            "Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": [
                            "bad_request", "invalid_input", "too_large", "no_model", "not_found",
                            "method_not_allowed", "capture_unavailable", "internal_error",
                            "unknown_patient", "profiles_unavailable"]},
                        "message": {"type": "string"},
                        "fields": {"type": "object", "description": "What is wrong, by record index "
                                   "(predict) or field name (feedback)"},
                    }}},
            },
        }},
    }
