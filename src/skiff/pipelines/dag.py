"""The Airflow DAG file of a pipeline: plain Python for Airflow 3 (``airflow.sdk``).

One task per node, each calling :func:`skiff.pipelines.runner.airflow_task` with
the node's spec, written as a literal so the file reads on its own. The file
imports only ``airflow.sdk`` and ``skiff.pipelines.runner`` (both in the Airflow
venv and image), and the runner imports Papermill only when a task runs, so
parsing the file stays cheap.
"""

from __future__ import annotations

import datetime as dt
import pprint
from typing import Any

from skiff.pipelines.spec import NodeSpec, Parameter, PipelineSpec


def _literal(value: Any, indent: int) -> str:
    """``value`` as a Python literal whose continuation lines start at ``indent``."""
    text = pprint.pformat(value, width=100 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _nodes(nodes: list[NodeSpec]) -> str:
    entries = "".join(f"    {n.name!r}: {_literal(n.to_json(), 6 + len(repr(n.name)))},\n" for n in nodes)
    return "{\n" + entries + "}"


def _doc(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring."""
    return text.replace("\\", "/").replace('"', "'")


def _param(p: Parameter) -> str:
    if p.default is not None:
        args = [repr(p.coerce(p.default)), f"type={p.json_type!r}"]
    elif p.required:  # no value: whoever triggers a run must give one
        args = [f"type={p.json_type!r}"]
    else:  # Airflow checks defaults of scheduled DAGs: None must be a valid value
        args = ["None", f"type={['null', p.json_type]!r}"]
    if p.description:
        args.append(f"description={p.description!r}")
    return f"Param({', '.join(args)})"


def _task(node: NodeSpec) -> str:
    kwargs = {"task_id": node.name, **node.resources.airflow_args()}
    if node.doc:
        kwargs["doc_md"] = node.doc
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return (f"    @task({args})\n"
            f"    def node_{node.name}():\n"
            f"        \"\"\"{_doc(f'{node.kind.capitalize()} {node.filename} (node {node.label}).')}\"\"\"\n"
            f"        return runner.airflow_task(NODES[{node.name!r}])\n")


def render(spec: PipelineSpec) -> str:
    """The DAG file's text."""
    submitted = dt.datetime.fromisoformat(spec.submitted_at)
    start = submitted.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    nodes = spec.in_order()
    params = "\n".join(f"        {p.name!r}: {_param(p)}," for p in spec.parameters)
    description = spec.description or f"Elyra pipeline {spec.source} of {spec.owner}"
    head = f'''"""{_doc(spec.name)}: an Elyra pipeline of {_doc(spec.owner)}, run by Skiff's Airflow runtime.

Generated from {_doc(spec.source)} (submission {spec.submission}, {spec.submitted_at});
submitting the pipeline again replaces this file, so edit the pipeline, not this.
Each task runs one node with skiff.pipelines.runner on the Airflow workers; the
nodes' files are in s3://{spec.bucket}/{spec.prefix}/, each run's results under
runs/<run id>/ there.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param, task

from skiff.pipelines import runner

NODES = {_nodes(nodes)}

with DAG(
    dag_id={spec.dag_id!r},
    description={description[:200]!r},
    schedule={spec.schedule!r},
    start_date=datetime.datetime({start.year}, {start.month}, {start.day}, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={{
{params}
    }},
    default_args={{"owner": {spec.owner!r}, "retries": 0}},
    tags=["elyra", "pipeline", {("owner:" + spec.owner)!r}],
    doc_md=__doc__,
) as dag:
'''
    body = "\n".join(_task(n) for n in nodes)
    calls = "\n".join(f"    {n.name}_task = node_{n.name}()" for n in nodes)
    edges = "\n".join(f"    {u}_task >> {n.name}_task" for n in nodes for u in n.upstream)
    return f"{head}\n{body}\n{calls}\n" + (f"{edges}\n" if edges else "")
