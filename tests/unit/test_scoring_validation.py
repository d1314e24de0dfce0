"""Batch validation says no exactly when the REST API's Feature.check does, in the same words."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from skiff.bracelet.features import FEATURES, FeatureSchema
from skiff.scoring.validation import MALFORMED, check_columns, missing_columns, parse_cell

pytestmark = pytest.mark.unit

SCHEMA = FeatureSchema()
# Cells a CSV can hold: empty, blanks, numbers in and out of every range, codes, text.
CELLS = ["", "  ", None, "0", "1", "2", "3", "4", "6", "7", "0.5", "1.0", " 2 ", "63", "63.5",
         "120", "121", "-5", "-5.1", "10", "250", "700", "701", "1e400", "-inf", "nan", "NaN",
         "abc", "1_000", "0x10", "39.9", "40"]


def _valid_cell(name: str) -> str:
    feature = next(f for f in FEATURES if f.name == name)
    return str(min(feature.codes.values())) if feature.codes else str(int(feature.minimum))


def _batch(feature: str, cells: list[str | None]) -> dict[str, pd.Series]:
    columns = {f.name: pd.Series([_valid_cell(f.name)] * len(cells), dtype=object) for f in FEATURES}
    columns[feature] = pd.Series(cells, dtype=object)
    return columns


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_a_cell_is_rejected_exactly_when_feature_check_rejects_it(feature) -> None:
    checked = check_columns(SCHEMA, _batch(feature.name, CELLS))
    for cell, ok, reason in zip(CELLS, checked.valid, checked.reasons, strict=True):
        expected = feature.check(parse_cell(cell))
        assert bool(ok) == (expected is None), (cell, expected, reason)
        assert reason == (None if expected is None else f"{feature.name}: {expected}"), cell


def test_the_model_input_is_the_servers_row() -> None:
    record = {"age": 63, "sex": 1, "cp": 1, "trestbps": 145, "chol": None, "fbs": 1, "restecg": 2,
              "thalch": 150, "exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": 6}
    cells = {k: pd.Series(["" if v is None else str(v)], dtype=object) for k, v in record.items()}
    checked = check_columns(SCHEMA, cells)
    clean, errors = SCHEMA.validate(record)
    assert errors == {}
    np.testing.assert_array_equal(checked.matrix[0], np.array(SCHEMA.row(clean)))


def test_every_bad_field_of_a_row_is_named_in_its_reason() -> None:
    cells = _batch("age", ["150"])
    cells["sex"] = pd.Series(["yes"], dtype=object)
    cells["cp"] = pd.Series([""], dtype=object)
    reason = check_columns(SCHEMA, cells).reasons[0]
    assert reason == ("age: must be between 1 and 120, got 150.0; "
                      "sex: must be a number, got str 'yes'; cp: is required and may not be null")


def test_a_malformed_line_is_rejected_whatever_its_fields() -> None:
    cells = _batch("age", ["63", "63"])
    corrupt = pd.Series([None, "1,2,3"], dtype=object)
    checked = check_columns(SCHEMA, cells, corrupt)
    assert checked.valid.tolist() == [True, False]
    assert checked.reasons == [None, MALFORMED]


def test_missing_feature_columns_are_named_in_schema_order() -> None:
    header = [n for n in SCHEMA.names if n not in ("thal", "age")] + ["id"]
    assert missing_columns(SCHEMA, header) == ["age", "thal"]
    assert missing_columns(SCHEMA, [*SCHEMA.names, "id"]) == []


def test_cells_combine_independently() -> None:
    # A row passes only when every feature passes, whatever the mix.
    pairs = list(itertools.product(["63", "abc", ""], ["1", "5", ""]))
    cells = _batch("age", [a for a, _ in pairs])
    cells["sex"] = pd.Series([s for _, s in pairs], dtype=object)
    checked = check_columns(SCHEMA, cells)
    assert checked.valid.tolist() == [a == "63" and s == "1" for a, s in pairs]
