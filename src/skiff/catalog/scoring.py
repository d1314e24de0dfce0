"""Lineage of batch scoring (dags/batch_scoring.py): input CSV + model version -> scored and rejected rows.

The scored and rejected outputs (Parquet folders under the run's ``out``) become
versions of datasets named after their location; the model input names the exact
registered version used, so `skiff history` of a scored batch leads to the model
version and, through it, to its training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skiff.catalog import lineage
from skiff.catalog.bracelet import asset_name


def scoring_lineage(context: Mapping[str, Any], params: Mapping[str, Any],
                    result: Mapping[str, Any]) -> dict[str, Any] | None:
    run_id, job, facet = lineage.airflow_run(context, parameters=dict(params),
                                             mlflow_run_id=result.get("mlflow_run_id"))
    inputs = [lineage.asset("dataset", asset_name(str(result["input"])), location=str(result["input"]),
                            format="csv"),
              lineage.asset("model", str(result["model_name"]), version=str(result["model_version"]))]
    outputs = [lineage.asset("dataset", asset_name(str(result[key])), location=str(result[key]),
                             format="parquet")
               for key in ("scored_output", "rejects_output")]
    return lineage.emit("COMPLETE", run_id, job, facet, inputs, outputs)
