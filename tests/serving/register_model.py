"""Train, convert and register a stand-in bracelet model the way the training notebook does.

A script, not a test: the serving tests run it with the serving-test venv
(docker/serving/requirements-test.txt: mlflow-skinny, scikit-learn, skl2onnx),
which the CLI venv and the serving image both lack. PYTHONPATH must reach
``src`` for ``skiff.bracelet``. Prints ``{"name", "version"}`` as JSON.

    python register_model.py --tracking-uri http://127.0.0.1:5000/mlflow [--name bracelet]
                             [--alias champion] [--c 1.0]
"""

from __future__ import annotations

import argparse
import json

import mlflow
import mlflow.onnx
import numpy as np
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from skiff.bracelet.features import TRAINING_SITE, FeatureSchema, load_encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--name", default="bracelet")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--experiment", default="bracelet-serving-tests")
    # Another C gives another model, so a swap test can tell two versions apart.
    parser.add_argument("--c", type=float, default=1.0)
    args = parser.parse_args()

    schema = FeatureSchema()
    records, labels = load_encoded([TRAINING_SITE])
    x = np.array([schema.row(r) for r in records], dtype=np.float32)
    y = np.array(labels, dtype=np.int64)
    pipeline = Pipeline([("impute", SimpleImputer()),
                         ("classify", LogisticRegression(C=args.c, max_iter=2000))]).fit(x, y)
    onx = to_onnx(pipeline, initial_types=[("features", FloatTensorType([None, len(schema.names)]))],
                  options={"zipmap": False})

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(schema.names)), "features")]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,), "label"),
                        TensorSpec(np.dtype(np.float32), (-1, 2), "probabilities")]))
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onx, name="model", signature=signature,
                                     metadata={"feature_schema": schema.to_json()},
                                     registered_model_name=args.name)
    version = str(info.registered_model_version)
    MlflowClient(args.tracking_uri).set_registered_model_alias(args.name, args.alias, version)
    print(json.dumps({"name": args.name, "version": version}))


if __name__ == "__main__":
    main()
