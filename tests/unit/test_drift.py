"""Feature drift on the real UCI data: the other hospitals drift from Cleveland, Cleveland does not."""

from __future__ import annotations

import random

import pytest

from skiff.bracelet.features import FEATURES, encode_row, is_holdout, load_raw
from skiff.monitoring.drift import MISSING, PSI_ALERT, bin_counts, drift_report, live_quality, psi

pytestmark = pytest.mark.unit

BY_NAME = {f.name: f for f in FEATURES}


@pytest.fixture(scope="module")
def cleveland() -> tuple[list[dict], list[dict]]:
    rows = load_raw(["cleveland"])
    train = [encode_row(r) for r in rows if not is_holdout(r)]
    held_out = [encode_row(r) for r in rows if is_holdout(r)]
    return train, held_out


@pytest.mark.parametrize("site", ["hungary", "switzerland", "va"])
def test_another_hospitals_patients_drift(cleveland: tuple[list[dict], list[dict]], site: str) -> None:
    train, _ = cleveland
    live = [encode_row(r) for r in load_raw([site])][:60]
    report = drift_report(train, live)
    assert report.alert
    # These sites measure thal and ca far less often than Cleveland did.
    assert {"thal", "ca"} <= set(report.drifted)
    assert report.as_json()["drifted"] == list(report.drifted)


def test_held_out_cleveland_rows_do_not_drift(cleveland: tuple[list[dict], list[dict]]) -> None:
    train, held_out = cleveland
    report = drift_report(train, held_out)
    assert not report.alert, report.as_json()
    assert len(report.features) == len(FEATURES)


def test_random_windows_of_the_training_data_rarely_alarm(cleveland: tuple[list[dict], list[dict]]) -> None:
    train, _ = cleveland
    alarms = 0
    for seed in range(100):
        rows = train[:]
        random.Random(seed).shuffle(rows)
        alarms += drift_report(rows[60:], rows[:60]).alert
    # Thirteen features at once: without the Bonferroni correction this was about 8 in 100.
    assert alarms <= 4


def test_a_feature_that_stops_being_measured_has_drifted() -> None:
    chol = BY_NAME["chol"]
    reference = [200.0 + i for i in range(100)]
    live = [None] * 80 + [250.0] * 20
    ref_counts, live_counts = bin_counts(chol, reference, live)
    assert (ref_counts[MISSING], live_counts[MISSING]) == (0, 80)
    report = drift_report([{"chol": v} for v in reference], [{"chol": v} for v in live], [chol])
    assert report.drifted == ("chol",)
    assert report.features[0].psi >= PSI_ALERT
    assert report.features[0].test == "missing-chi2"


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    small, large = psi({"a": 50, "b": 50}, {"a": 60, "b": 40}), psi({"a": 50, "b": 50}, {"a": 90, "b": 10})
    assert 0 < small < 0.1 < PSI_ALERT < large


def test_too_few_rows_give_no_verdict() -> None:
    report = drift_report([{"age": 50.0}] * 10, [{"age": 80.0}] * 10, [BY_NAME["age"]])
    assert report.skipped == ("age",)
    assert not report.alert


def test_live_quality() -> None:
    assert live_quality([0, 1, 1, 0], [0.2, 0.8, 0.4, 0.1]) == {"n": 4, "accuracy": 0.75, "roc_auc": 1.0}
    assert live_quality([1, 1], [0.9, 0.3])["roc_auc"] is None
    assert live_quality([], []) == {"n": 0, "accuracy": None, "roc_auc": None}
