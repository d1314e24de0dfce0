"""The REST API's request and response shapes, without Flask.

Each step of a request is one function: :func:`parse_predict` (bytes -> records),
:func:`fill_records` (records naming a patient -> completed from the profile),
:func:`validate_records` (records -> clean records, against the served model's
schema), then the model predicts, and :func:`predictions_body` serialises. Every
error is an :class:`ApiError`, rendered by :func:`error_body` as one JSON shape:
``{"error": {"code", "message", "fields"?}}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.model_server.profiles import ProfileStoreUnavailable
from skiff.bracelet import profiles
from skiff.bracelet.features import FeatureSchema

# One request is one SQLite transaction and one ONNX run: keep it bounded.
MAX_RECORDS = 1000
# Flask refuses larger bodies (413) before reading them.
MAX_BODY_BYTES = 1 << 20


@dataclass
class ApiError(Exception):
    """An answer other than success: HTTP status, a stable code, a message, field errors."""

    status: int
    code: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def error_body(err: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.fields:
        body["fields"] = err.fields
    return {"error": body}


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and neither do we.
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400."""
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON document")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class PredictRequest:
    records: list[Any]
    # A bare record gets the flat answer fields too.
    single: bool


def parse_predict(body: bytes) -> PredictRequest:
    """One record ``{...}``, ``{"records": [...]}`` or a JSON list of records; else a 400."""
    doc = parse_json(body)
    if isinstance(doc, list):
        records, single = doc, False
    elif isinstance(doc, dict) and "records" in doc:
        if set(doc) != {"records"}:
            extra = ", ".join(sorted(set(doc) - {"records"}))
            raise bad_request(f'a batch is {{"records": [...]}} only; unexpected keys: {extra}')
        if not isinstance(doc["records"], list):
            raise bad_request(f'"records" must be a list, got {type(doc["records"]).__name__}')
        records, single = doc["records"], False
    elif isinstance(doc, dict):
        records, single = [doc], True
    else:
        raise bad_request(f"expected a JSON object or list of objects, got {type(doc).__name__}")
    if not records:
        raise bad_request("no records to predict")
    if len(records) > MAX_RECORDS:
        raise bad_request(f"at most {MAX_RECORDS} records per request, got {len(records)}")
    return PredictRequest(records, single)


def fill_records(records: Sequence[Any], lookup: Callable[[list[str]], Mapping[str, Mapping[str, Any]]],
                 names: Collection[str]) -> list[Any]:
    """Records that name a patient (``patient_id``) completed from the patient's profile.

    The record's own fields win over the profile's. Records without an id pass
    through untouched (and cost no lookup); so do non-objects, for validation to
    reject. A malformed id is a 422, an id without a profile a 404, both naming
    the record and the id; ``lookup`` raising ProfileStoreUnavailable is a 503.
    """
    ids: dict[int, str] = {}
    bad: dict[str, dict[str, str]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            continue
        try:
            pid = profiles.patient_id(record)
        except ValueError as exc:
            bad[str(index)] = {profiles.ID_FIELD: str(exc)}
            continue
        if pid is not None:
            ids[index] = pid
    if bad:
        raise ApiError(422, "invalid_input", f"{len(bad)} record{'s have' if len(bad) > 1 else ' has'} "
                       f"a malformed {profiles.ID_FIELD}; see fields", bad)
    if not ids:
        return list(records)
    try:
        found = lookup(list(dict.fromkeys(ids.values())))
    except ProfileStoreUnavailable as exc:
        raise ApiError(503, "profiles_unavailable",
                       f"patient profiles cannot be read now: {exc}") from exc
    unknown = {str(i): {profiles.ID_FIELD: f"no profile for patient {pid!r}"}
               for i, pid in ids.items() if pid not in found}
    if unknown:
        names_list = sorted({ids[int(i)] for i in unknown})
        shown = ", ".join(repr(n) for n in names_list[:5]) + (", ..." if len(names_list) > 5 else "")
        raise ApiError(404, "unknown_patient", f"no profile for {profiles.ID_FIELD} {shown}", unknown)
    filled = list(records)
    for index, pid in ids.items():
        filled[index] = profiles.fill(records[index], found[pid], names)
    return filled


def validate_records(schema: FeatureSchema, records: Sequence[Any]) -> list[dict[str, float | None]]:
    """Clean records in request order, or a 422 listing every bad field of every bad record."""
    clean: list[dict[str, float | None]] = []
    problems: dict[str, dict[str, str]] = {}
    for index, record in enumerate(records):
        values, errors = schema.validate(record)
        if errors:
            problems[str(index)] = errors
        clean.append(values)
    if problems:
        bad = len(problems)
        raise ApiError(422, "invalid_input",
                       f"{bad} of {len(records)} record{'s' if len(records) > 1 else ''} "
                       f"{'is' if bad == 1 else 'are'} invalid; see fields", problems)
    return clean


@dataclass(frozen=True)
class Outcome:
    """One record's answer."""

    request_id: uuid.UUID
    prediction: int
    probability: float

    def to_json(self) -> dict[str, Any]:
        return {"request_id": str(self.request_id), "prediction": self.prediction,
                "probability": self.probability}


def predictions_body(model_name: str, model_version: str, outcomes: Sequence[Outcome],
                     single: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": {"name": model_name, "version": model_version},
                            "predictions": [o.to_json() for o in outcomes]}
    if single:
        body.update(outcomes[0].to_json())
    return body


@dataclass(frozen=True)
class Feedback:
    request_id: uuid.UUID
    label: int


def parse_feedback(body: bytes) -> Feedback:
    """``{"request_id": uuid, "label": 0|1}``: 400 if not a JSON object, 422 if a field is wrong."""
    doc = parse_json(body)
    if not isinstance(doc, Mapping):
        raise bad_request(f"expected a JSON object, got {type(doc).__name__}")
    errors: dict[str, str] = {}
    request_id = None
    raw_id = doc.get("request_id")
    if "request_id" not in doc:
        errors["request_id"] = "is missing"
    elif not isinstance(raw_id, str):
        errors["request_id"] = f"must be a string, got {type(raw_id).__name__}"
    else:
        try:
            request_id = uuid.UUID(raw_id)
        except ValueError:
            errors["request_id"] = f"must be a UUID, got {raw_id!r}"
    label = doc.get("label")
    if "label" not in doc:
        errors["label"] = "is missing"
    elif isinstance(label, bool) or label not in (0, 1):
        errors["label"] = f"must be 0 or 1, got {label!r}"
    for extra in sorted(set(doc) - {"request_id", "label"}):
        errors[extra] = "is not a field of feedback"
    if errors:
        raise ApiError(422, "invalid_input", "the feedback is invalid; see fields", errors)
    assert request_id is not None
    return Feedback(request_id, int(label))  # type: ignore[arg-type]
