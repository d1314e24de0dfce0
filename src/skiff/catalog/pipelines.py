"""Lineage of Elyra pipelines' nodes: each node's output files become dataset versions.

Called by skiff.pipelines.runner.airflow_task after a node ran on an Airflow
worker. A node's output ``out/result.csv`` of pipeline (DAG) ``alice__sales`` is
the asset ``dataset/alice__sales.out-result.csv``; each run adds a version with
that run's S3 location, size and SHA-256, made by the node (step = its notebook or
script) with the run's parameters, from the versions of the upstream outputs it
read. Owner, team and access come from the pipeline's workflow asset (registered
at submission), so a team pipeline's outputs are its team's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from skiff.catalog import lineage

_GLOB = re.compile(r"[*?\[\]]")


def output_asset(pipeline: str, path: str) -> str:
    """The catalog name of a pipeline's output file (stable across runs)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{pipeline}.{path.removeprefix('./')}").strip("-.")
    return cleaned[:128] or "output"


def node_lineage(context: Mapping[str, Any], node: Any, params: Mapping[str, Any],
                 result: Mapping[str, Any]) -> dict[str, Any] | None:
    """Record the node's outputs (none recorded when it declares none)."""
    chosen = {name: params[name] for name in node.parameters if name in params}
    run_id, job, facet = lineage.airflow_run(
        context, step=node.filename, user=node.owner, parameters=chosen,
        notebook=node.filename if node.kind == "notebook" else None, workflow=f"workflow/{node.pipeline}")
    inputs = [lineage.asset("dataset", output_asset(node.pipeline, pattern))
              for pattern in node.inputs if not _GLOB.search(pattern)]
    outputs = [lineage.asset("dataset", output_asset(node.pipeline, f["path"]), location=f["location"],
                             size_bytes=f["size_bytes"], digest=f["digest"],
                             format=f["path"].rsplit(".", 1)[-1] if "." in f["path"] else None)
               for f in result.get("files", [])]
    return lineage.emit("COMPLETE", run_id, job, facet, inputs, outputs)
