"""A model's files come only from the platform's MLflow, whatever its version's source says."""

from __future__ import annotations

import pytest

from skiff import model_origin

pytestmark = pytest.mark.unit

TRACKING = "http://mlflow:5000"


@pytest.mark.parametrize("uri", ["mlflow-artifacts:/2/models/m-abc/artifacts",
                                 "mlflow-artifacts://mlflow:5000/2/models/m-abc/artifacts"])
def test_our_tracking_servers_artifacts_pass(uri: str) -> None:
    model_origin.check(uri, TRACKING)


@pytest.mark.parametrize(("uri", "named"), [
    ("mlflow-artifacts://attacker.example/2/models/m/artifacts", "names the host 'attacker.example'"),
    ("mlflow-artifacts://mlflow:5001/2/models/m/artifacts", "names the host 'mlflow:5001'"),
    ("s3://someone-elses-bucket/model", "not served by the tracking server"),
    ("https://attacker.example/model.onnx", "not served by the tracking server"),
    ("file:///etc/passwd", "not served by the tracking server"),
])
def test_any_other_store_is_refused_and_named(uri: str, named: str) -> None:
    with pytest.raises(model_origin.ForeignModel, match=named):
        model_origin.check(uri, TRACKING)
