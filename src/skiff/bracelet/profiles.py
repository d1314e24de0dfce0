"""Patient profiles for online features: what Ignite holds, and how a request is filled from it.

A bracelet measures vitals; the rest of what the model needs is the patient's
record, kept in Ignite's cache :data:`CACHE` under the patient id
(docs/decisions/0012-online-features.md):

- :data:`PROFILE_FEATURES`, static or slow-moving record data: age, sex, chest-pain
  type, cholesterol, fasting blood sugar, fluoroscopy and thalassemia results;
- :data:`VITALS`, what a device measures at request time (blood pressure, ECG,
  heart rate and the exercise-test readings). The profile keeps the last clinical
  measurement of each, used when a request does not send it.

A request field always wins over the profile's value, null included (a device
saying "not measured now"). Values are stored as one JSON object per patient, in
the API's numeric encoding, so any Ignite client can read them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from skiff.bracelet.features import NAMES, FeatureSchema, encode_row, load_raw

CACHE = "patient_profiles"
# The request field naming the patient whose profile fills in what the request leaves out.
ID_FIELD = "patient_id"
PROFILE_FEATURES = ("age", "sex", "cp", "chol", "fbs", "ca", "thal")
VITALS = ("trestbps", "restecg", "thalch", "exang", "oldpeak", "slope")
MAX_ID_LENGTH = 128

assert set(PROFILE_FEATURES) | set(VITALS) == set(NAMES)


def encode(profile: Mapping[str, float | None]) -> str:
    return json.dumps({k: profile[k] for k in NAMES if k in profile}, separators=(",", ":"))


def decode(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError(f"a profile must be a JSON object, got {type(doc).__name__}")
    return doc


def dataset_profiles(sites: Iterable[str] | None = None) -> dict[str, dict[str, float | None]]:
    """Profiles of the UCI patients, keyed by the CSV's ``id`` (unique over all four sites)."""
    return {raw["id"]: encode_row(raw) for raw in load_raw(sites)}


def patient_id(record: Mapping[str, Any]) -> str | None:
    """The record's patient id; None when it has none. Raises ValueError if malformed."""
    if ID_FIELD not in record:
        return None
    value = record[ID_FIELD]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    return value


def fill(record: Mapping[str, Any], profile: Mapping[str, Any],
         names: Collection[str] = NAMES) -> dict[str, Any]:
    """The profile's ``names`` overlaid with the record's fields (the record wins), less the id.

    Only the served model's features are taken from the profile; anything else the
    record carries stays, for validation to reject by name.
    """
    filled = {k: v for k, v in profile.items() if k in names}
    filled.update((k, v) for k, v in record.items() if k != ID_FIELD)
    return filled


def checked(candidates: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(encoded profiles ready to store, errors by patient id) against the current feature schema."""
    schema = FeatureSchema()
    good: dict[str, str] = {}
    bad: dict[str, dict[str, str]] = {}
    for pid, profile in candidates.items():
        clean, errors = schema.validate(profile)
        if errors:
            bad[pid] = errors
        else:
            good[pid] = encode(clean)
    return good, bad


def store(cache: Any, encoded: Mapping[str, str], chunk: int = 500) -> int:
    """Put the encoded profiles into an Ignite cache (pyignite's), in chunks; returns how many."""
    items = list(encoded.items())
    for start in range(0, len(items), chunk):
        cache.put_all(dict(items[start:start + chunk]))
    return len(items)
