"""Promote a candidate model version only if it is not worse than the champion.

Both models are scored here, now, on the same rows: the Cleveland held-out split
(:func:`skiff.bracelet.features.is_holdout`), through the ONNX model each version
serves. Scores logged at training time are not compared: the champion may have
been trained on other rows, by other code.

:func:`decide` is pure and has no dependencies; :func:`evaluate_onnx` and
:func:`promote_if_not_worse` import onnxruntime, scikit-learn and MLflow when
called (the Airflow venv has them, the CLI's does not).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff import model_origin
from skiff.bracelet.features import TRAINING_SITE, FeatureSchema, encode_row, is_holdout, label, load_raw

METRICS = ("accuracy", "roc_auc", "f1")
TAG_PREFIX = "skiff.promotion."


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: float | None = None
    champion: float | None = None
    # Filled by promote_if_not_worse: which version held the alias when we compared.
    champion_version: str | None = None

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"


def decide(candidate: float, champion: float | None, margin: float) -> Decision:
    """Promote when there is no champion, or ``candidate >= champion - margin`` (higher is better)."""
    if margin < 0 or math.isnan(margin):
        raise ValueError(f"margin must be a number >= 0, got {margin}")
    if math.isnan(candidate):
        return Decision(False, "the candidate's score is NaN", candidate, champion)
    if champion is None or math.isnan(champion):
        return Decision(True, "no champion to compare with", candidate, champion)
    if candidate > champion:
        how = "better than"
    elif candidate == champion:
        how = "equal to"
    elif candidate >= champion - margin:
        how = f"within the margin {margin:g} of"
    else:
        return Decision(False, f"candidate {candidate:.4f} is worse than champion {champion:.4f} "
                               f"by more than the margin {margin:g}", candidate, champion)
    return Decision(True, f"candidate {candidate:.4f} is {how} champion {champion:.4f}",
                    candidate, champion)


def holdout(schema: FeatureSchema | None = None) -> tuple[list[list[float]], list[int]]:
    """The Cleveland held-out rows (model input order of ``schema``, NaN = missing) and labels."""
    schema = schema or FeatureSchema()
    raw = [r for r in load_raw([TRAINING_SITE]) if is_holdout(r)]
    return [schema.row(encode_row(r)) for r in raw], [label(r) for r in raw]


def evaluate_onnx(model_path: str | Path, rows: Sequence[Sequence[float | None]],
                  labels: Sequence[int]) -> dict[str, float]:
    """Accuracy, ROC AUC and F1 of an ONNX classifier on ``rows`` (model input order).

    The model takes one float32 input [N, features] and has an output named
    ``probabilities`` [N, 2] (skl2onnx with zipmap=False); the positive class is
    column 1 and the predicted label is ``probability >= 0.5``.
    """
    import numpy as np
    import onnxruntime as ort
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"{model_path}: expected one input, found {[i.name for i in inputs]}")
    outputs = [o.name for o in session.get_outputs()]
    if "probabilities" not in outputs:
        raise ValueError(f"{model_path}: no output named 'probabilities' (outputs: {outputs})")
    x = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    proba = session.run(["probabilities"], {inputs[0].name: x})[0][:, 1]
    predicted = (proba >= 0.5).astype(np.int64)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, proba)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
    }


def model_files(model_dir: str | Path) -> tuple[Path, FeatureSchema]:
    """The ONNX file of a downloaded MLflow model and its feature schema (MLmodel metadata)."""
    import yaml

    model_dir = Path(model_dir)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    onnx_flavor = (mlmodel.get("flavors") or {}).get("onnx")
    if not onnx_flavor:
        raise ValueError(f"{model_dir}: not an ONNX model (flavors: {sorted(mlmodel.get('flavors') or {})})")
    schema_doc = (mlmodel.get("metadata") or {}).get("feature_schema")
    schema = FeatureSchema.from_json(schema_doc) if schema_doc else FeatureSchema()
    return model_dir / onnx_flavor["data"], schema


def score_version(tracking_uri: str, model_name: str, version: str) -> dict[str, float]:
    """Download version ``version`` of ``model_name`` and score it on the held-out rows."""
    import mlflow
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="skiff-promotion-") as tmp:
        # MLflow resolves models:/ URIs with the process-wide registry URI, whatever
        # download_artifacts is given: set both (a local registry otherwise).
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        model_origin.check(mlflow.MlflowClient().get_model_version_download_uri(model_name, version),
                           tracking_uri)
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}",
                                                    dst_path=tmp)
        path, schema = model_files(local)
        rows, labels = holdout(schema)  # the champion is scored in its own schema's order
        return evaluate_onnx(path, rows, labels)


def promote_if_not_worse(tracking_uri: str, model_name: str, version: str | int,
                         metric: str = "roc_auc", margin: float = 0.0,
                         alias: str = "champion") -> Decision:
    """Score the candidate and the champion, move ``alias`` if :func:`decide` says so.

    The decision, its reason and both scores are tagged on the candidate version
    (``skiff.promotion.*``) whatever the outcome.
    """
    from mlflow.tracking import MlflowClient

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = str(version)
    candidate_scores = score_version(tracking_uri, model_name, version)
    # The registered model's aliases, not get_model_version_by_alias: a missing alias
    # is an INVALID_PARAMETER_VALUE error there, indistinguishable from a real one.
    champion_version = (client.get_registered_model(model_name).aliases or {}).get(alias)
    champion_version = None if champion_version is None else str(champion_version)
    champion_scores: dict[str, float] | None = None
    if champion_version is not None:
        champion_scores = (candidate_scores if champion_version == version
                           else score_version(tracking_uri, model_name, champion_version))
    decision = decide(candidate_scores[metric],
                      None if champion_scores is None else champion_scores[metric], margin)
    decision = Decision(decision.promote, decision.reason, decision.candidate, decision.champion,
                        champion_version)
    tags: dict[str, Any] = {
        "decision": decision.label,
        "reason": decision.reason,
        "metric": metric,
        "margin": margin,
        "alias": alias,
        "champion_version": decision.champion_version or "none",
        **{f"candidate_{m}": candidate_scores[m] for m in METRICS},
        **{f"champion_{m}": "none" if champion_scores is None else champion_scores[m] for m in METRICS},
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, TAG_PREFIX + key,
                                     f"{value:.6f}" if isinstance(value, float) else str(value))
    # Last: whoever follows the alias (the model server) finds the decision already tagged.
    if decision.promote:
        client.set_registered_model_alias(model_name, alias, version)
    return decision


def summary(decision: Decision, metric: str) -> Mapping[str, Any]:
    """The decision as a JSON-able dict (the DAG's XCom)."""
    return {"decision": decision.label, "promoted": decision.promote, "reason": decision.reason,
            "metric": metric, "candidate": decision.candidate, "champion": decision.champion,
            "champion_version": decision.champion_version}
