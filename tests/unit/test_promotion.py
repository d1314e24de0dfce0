"""Promotion decisions: promote when there is no champion or the candidate is not worse.

evaluate_onnx and promote_if_not_worse need onnxruntime, scikit-learn and MLflow
(the Airflow venv); tests/integration/test_bracelet_training.py proves them on
the real stack.
"""

from __future__ import annotations

import math

import pytest

from skiff.bracelet.promotion import decide, holdout, summary

pytestmark = pytest.mark.unit


def test_no_champion_promotes() -> None:
    d = decide(0.61, None, margin=0.0)
    assert d.promote and d.label == "promoted"
    assert "no champion" in d.reason
    assert (d.candidate, d.champion) == (0.61, None)


def test_better_candidate_promotes() -> None:
    d = decide(0.90, 0.85, margin=0.0)
    assert d.promote
    assert "better" in d.reason


def test_equal_candidate_promotes() -> None:
    d = decide(0.85, 0.85, margin=0.0)
    assert d.promote
    assert "equal" in d.reason


def test_worse_within_margin_promotes() -> None:
    d = decide(0.84, 0.85, margin=0.02)
    assert d.promote
    assert "margin" in d.reason


def test_worse_beyond_margin_is_rejected() -> None:
    d = decide(0.80, 0.85, margin=0.02)
    assert not d.promote and d.label == "rejected"
    assert "worse" in d.reason and "0.8000" in d.reason and "0.8500" in d.reason


def test_worse_with_no_margin_is_rejected() -> None:
    assert not decide(0.8499, 0.85, margin=0.0).promote


def test_a_nan_candidate_is_never_promoted() -> None:
    assert not decide(math.nan, None, margin=0.0).promote
    assert not decide(math.nan, 0.5, margin=1.0).promote


def test_a_nan_champion_score_counts_as_no_champion() -> None:
    assert decide(0.5, math.nan, margin=0.0).promote


def test_negative_margin_is_an_error() -> None:
    with pytest.raises(ValueError, match="margin"):
        decide(0.9, 0.8, margin=-0.1)


def test_summary_is_the_xcom_shape() -> None:
    doc = summary(decide(0.9, 0.8, margin=0.0), "roc_auc")
    assert doc["decision"] == "promoted" and doc["promoted"] is True
    assert doc["metric"] == "roc_auc" and doc["candidate"] == 0.9 and doc["champion"] == 0.8


def test_holdout_is_every_fifth_cleveland_row_in_schema_order() -> None:
    rows, labels = holdout()
    assert len(rows) == len(labels) == 60
    assert all(len(r) == 13 for r in rows)
    assert set(labels) == {0, 1}
    assert all(isinstance(v, float) for r in rows for v in r)  # missing values are NaN
