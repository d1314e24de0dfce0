"""The capture events on Kafka: one JSON object per message, keyed by request id.

Predictions and labels share the topic ``prediction-requests`` and the key
(the request id), so a label lands in the same partition after its prediction.

prediction: {"type": "prediction", "request_id": uuid, "time": ISO-8601 UTC,
             "model_name": str, "model_version": str, "features": {name: number|null},
             "prediction": 0|1, "probability": float}
label:      {"type": "label", "request_id": uuid, "time": ISO-8601 UTC, "label": 0|1}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOPIC = "prediction-requests"
DEAD_LETTER_TOPIC = "prediction-requests-dlq"


class BadEvent(ValueError):
    """A message that is not a valid capture event; the reason says why."""


@dataclass(frozen=True)
class Prediction:
    request_id: uuid.UUID
    time: datetime
    model_name: str
    model_version: str
    features: dict[str, float | None]
    prediction: int
    probability: float

    def to_json(self) -> dict[str, Any]:
        return {"type": "prediction", "request_id": str(self.request_id),
                "time": self.time.isoformat(), "model_name": self.model_name,
                "model_version": self.model_version, "features": self.features,
                "prediction": self.prediction, "probability": self.probability}


@dataclass(frozen=True)
class Label:
    request_id: uuid.UUID
    time: datetime
    label: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "label", "request_id": str(self.request_id),
                "time": self.time.isoformat(), "label": self.label}


def now() -> datetime:
    return datetime.now(UTC)


def encode(event: Prediction | Label) -> tuple[bytes, bytes]:
    """(key, value) of the Kafka message."""
    return str(event.request_id).encode(), json.dumps(event.to_json(), separators=(",", ":")).encode()


def _field(doc: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in doc:
        raise BadEvent(f"missing field {name!r}")
    value = doc[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise BadEvent(f"field {name!r} has the wrong type {type(value).__name__}")
    return value


def decode(value: bytes) -> Prediction | Label:
    """Parse one message; raise BadEvent naming what is wrong."""
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadEvent("not a JSON object")
    try:
        request_id = uuid.UUID(_field(doc, "request_id", str))
        time = datetime.fromisoformat(_field(doc, "time", str))
    except ValueError as exc:
        raise BadEvent(str(exc)) from None
    if time.tzinfo is None:
        raise BadEvent("field 'time' has no time zone")
    kind = doc.get("type")
    if kind == "prediction":
        features = _field(doc, "features", dict)
        return Prediction(request_id, time, _field(doc, "model_name", str),
                          _field(doc, "model_version", str), features,
                          int(_field(doc, "prediction", int)),
                          float(_field(doc, "probability", (int, float))))
    if kind == "label":
        value_ = _field(doc, "label", int)
        if value_ not in (0, 1):
            raise BadEvent(f"label must be 0 or 1, got {value_}")
        return Label(request_id, time, value_)
    raise BadEvent(f"unknown event type {kind!r}")
