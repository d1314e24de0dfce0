"""Feature drift between the champion's training data and a window of captured requests.

Per feature, two views that fail differently:

- **Population stability index** (PSI) over bins of the reference: quantile bins
  for measurements, one bin per code for coded features, and one bin for
  "not measured" (a site that stops sending cholesterol has drifted, whatever
  its other values). The usual reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 a
  real shift. PSI ignores sample size, so on its own it alarms on small windows.
- **A two-sample test** saying whether the difference could be chance:
  Kolmogorov-Smirnov for measurements (plus chi-squared on how often they are
  missing), chi-squared on the same bins for codes (scipy). It flags tiny,
  harmless shifts on large windows.

A feature has drifted when both agree: PSI at least ``PSI_ALERT`` *and* p below
``P_ALERT`` divided by the number of features tested. Live accuracy and ROC
AUC (where labels arrived) are computed with scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from skiff.bracelet.features import FEATURES, Feature

PSI_ALERT = 0.2
P_ALERT = 0.01
QUANTILE_BINS = 5
# Stand-in share of an empty bin: PSI's log is undefined at zero.
EMPTY_SHARE = 1e-4
# Fewer values than this on either side: no verdict for the feature.
MIN_VALUES = 20
MISSING = "missing"


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    test: str
    statistic: float
    p_value: float
    reference_n: int
    live_n: int
    missing_reference: float
    missing_live: float
    drifted: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    skipped: tuple[str, ...]

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)

    @property
    def alert(self) -> bool:
        return bool(self.drifted)

    def as_json(self) -> dict[str, Any]:
        return {"alert": self.alert, "drifted": list(self.drifted), "skipped": list(self.skipped),
                "features": [f.as_json() for f in self.features]}


def _present(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def _bin_edges(reference: Sequence[float], bins: int) -> list[float]:
    """Inner edges at the reference's quantiles (repeated edges merged: many equal values)."""
    ordered = sorted(reference)
    edges: list[float] = []
    for i in range(1, bins):
        edge = ordered[min(len(ordered) - 1, int(len(ordered) * i / bins))]
        if not edges or edge > edges[-1]:
            edges.append(edge)
    return edges


def _bin_of(value: float | None, feature: Feature, edges: Sequence[float]) -> str:
    if value is None or math.isnan(float(value)):
        return MISSING
    if feature.codes:
        return str(int(value))
    index = sum(1 for edge in edges if value >= edge)
    return f"q{index}"


def bin_counts(feature: Feature, reference: Sequence[float | None], live: Sequence[float | None],
               bins: int = QUANTILE_BINS) -> tuple[dict[str, int], dict[str, int]]:
    """Counts per bin (the reference's bins, "missing" included) of both samples."""
    edges = [] if feature.codes else _bin_edges(_present(reference), bins)
    ref_counts: dict[str, int] = {}
    live_counts: dict[str, int] = {}
    for value in reference:
        key = _bin_of(value, feature, edges)
        ref_counts[key] = ref_counts.get(key, 0) + 1
    for value in live:
        key = _bin_of(value, feature, edges)
        live_counts[key] = live_counts.get(key, 0) + 1
    for key in set(ref_counts) | set(live_counts):
        ref_counts.setdefault(key, 0)
        live_counts.setdefault(key, 0)
    return ref_counts, live_counts


def psi(reference_counts: Mapping[str, int], live_counts: Mapping[str, int]) -> float:
    ref_total = sum(reference_counts.values()) or 1
    live_total = sum(live_counts.values()) or 1
    total = 0.0
    for key in reference_counts:
        expected = max(reference_counts[key] / ref_total, EMPTY_SHARE)
        actual = max(live_counts.get(key, 0) / live_total, EMPTY_SHARE)
        total += (actual - expected) * math.log(actual / expected)
    return total


def feature_drift(feature: Feature, reference: Sequence[float | None],
                  live: Sequence[float | None], p_alert: float = P_ALERT) -> FeatureDrift:
    from scipy import stats

    ref_counts, live_counts = bin_counts(feature, reference, live)
    index = psi(ref_counts, live_counts)
    if feature.codes:
        # Only bins seen on one side or the other exist, so no column is all zeros.
        keys = sorted(ref_counts)
        table = [[ref_counts[k] for k in keys], [live_counts[k] for k in keys]]
        if len(keys) < 2:
            statistic, p_value = 0.0, 1.0
        else:
            result = stats.chi2_contingency(table)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        test = "chi2"
    else:
        # KS compares the values measured on each side; whether a value is measured at
        # all (Hungary sends almost no `ca`) is a second question with its own test.
        ref_values, live_values = _present(reference), _present(live)
        if ref_values and live_values:
            result = stats.ks_2samp(ref_values, live_values)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        else:
            statistic, p_value = 1.0, 0.0
        test = "ks"
        missing = [[ref_counts.get(MISSING, 0), len(ref_values)],
                   [live_counts.get(MISSING, 0), len(live_values)]]
        if missing[0][0] + missing[1][0] > 0:
            measured = stats.chi2_contingency(missing)
            if float(measured.pvalue) < p_value:
                statistic, p_value, test = float(measured.statistic), float(measured.pvalue), "missing-chi2"
    return FeatureDrift(
        name=feature.name, psi=index, test=test, statistic=statistic, p_value=p_value,
        reference_n=len(reference), live_n=len(live),
        missing_reference=ref_counts.get(MISSING, 0) / max(len(reference), 1),
        missing_live=live_counts.get(MISSING, 0) / max(len(live), 1),
        drifted=index >= PSI_ALERT and p_value < p_alert,
    )


def drift_report(reference: Sequence[Mapping[str, float | None]],
                 live: Sequence[Mapping[str, float | None]],
                 features: Sequence[Feature] = FEATURES) -> DriftReport:
    """Each feature's drift from ``reference`` rows to ``live`` rows (encoded, None = missing)."""
    results, skipped = [], []
    for feature in features:
        ref_values = [row.get(feature.name) for row in reference]
        live_values = [row.get(feature.name) for row in live]
        if len(ref_values) < MIN_VALUES or len(live_values) < MIN_VALUES:
            skipped.append(feature.name)
            continue
        # Bonferroni: thirteen features tested at once would otherwise alarm on a random
        # window of the training data itself about one time in twelve.
        results.append(feature_drift(feature, ref_values, live_values,
                                     p_alert=P_ALERT / len(features)))
    return DriftReport(tuple(results), tuple(skipped))


def live_quality(labels: Sequence[int], probabilities: Sequence[float],
                 threshold: float = 0.5) -> dict[str, float | int | None]:
    """Accuracy and ROC AUC of labelled predictions; AUC is None while one class is all there is."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    if not labels:
        return {"n": 0, "accuracy": None, "roc_auc": None}
    predicted = [1 if p >= threshold else 0 for p in probabilities]
    auc = float(roc_auc_score(labels, probabilities)) if len(set(labels)) == 2 else None
    return {"n": len(labels), "accuracy": float(accuracy_score(labels, predicted)), "roc_auc": auc}
