"""Run one pipeline node: its files from S3, Papermill or Python, its outputs back to S3.

This is the bootstrap Elyra's stock runtimes download into a container at run
time; here it ships with the platform (the skiff package of the Airflow venv and
image), so nothing is fetched from the internet. It runs on the Airflow workers
(:func:`airflow_task`, what the generated DAGs call) and in exported Compose
files (``python -m skiff.pipelines.runner --node-json ... --run-id ...``). It
needs minio and, for notebooks, papermill; never Elyra.

A node runs in a fresh folder holding its archive (the notebook or script and its
dependencies, as submitted) and the outputs of the nodes before it. Notebooks get
the node's environment variables and its pipeline parameters as Papermill
parameters (the parameters win on a clash); both also reach the kernel or script
as environment variables, beside the part of the worker's environment user code
may see (skiff.user_env), never the worker's own secrets. ``LOGNAME``/``USER`` are
the pipeline's owner, so MLflow records runs under the person who submitted the
pipeline (``mlflow.user``). The node's S3 keys are the owner's own (on Airflow,
the catalog gives them to the platform's service), which reach their own stores
and their own folders of the platform's buckets only; the runner itself moves the
node's files with the worker's keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skiff import user_env
from skiff.pipelines import storage
from skiff.pipelines.spec import NOTEBOOK, NodeSpec

log = logging.getLogger(__name__)
# What Elyra's own runtimes tell a node about where it runs.
RUNTIME_NAME = "skiff-airflow"


class NodeFailed(RuntimeError):
    """The notebook or script failed, or a declared file is missing; the message says which."""


S3_KEYS = ("S3_ACCESS_KEY", "S3_SECRET_KEY")


def owner_s3_keys(owner: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The pipeline owner's own S3 keys, which the catalog hands to the platform's service.

    No fallback to the worker's keys: a node of someone without an S3 account fails.
    """
    from urllib.parse import quote

    from skiff.catalog import lineage
    from skiff.catalog.client import CatalogError, Client

    try:
        with Client(url=environ.get("CATALOG_URL"), token=lineage.service_token(environ)) as catalog:
            keys = catalog.request("GET", f"/users/{quote(owner, safe='')}/s3")
    except (CatalogError, lineage.LineageError) as exc:
        raise NodeFailed(f"no S3 keys of {owner}, whose pipeline this is: {exc}") from None
    return {"S3_ACCESS_KEY": keys["access_key"], "S3_SECRET_KEY": keys["secret_key"]}


def node_env(node: NodeSpec, params: Mapping[str, Any], run_id: str,
             base: Mapping[str, str] | None = None,
             s3_keys: Mapping[str, str] | None = None) -> dict[str, str]:
    """The node's process environment: what user code may see of the worker's
    (skiff.user_env, an allow-list), the owner's S3 keys, the node's variables, its
    parameters, who and where."""
    env = user_env.passed_on(os.environ if base is None else base)
    env.update({k: v for k, v in (s3_keys or {}).items() if k in S3_KEYS})
    env.update(node.env)
    env.update({name: _as_text(params[name]) for name in node.parameters if name in params})
    env.update({
        # MLflow's default run context takes mlflow.user from these (getpass.getuser()).
        "LOGNAME": node.owner,
        "USER": node.owner,
        "SKIFF_USER": node.owner,
        "SKIFF_PIPELINE": node.pipeline,
        "SKIFF_PIPELINE_NODE": node.name,
        "SKIFF_PIPELINE_RUN_ID": run_id,
        "ELYRA_RUNTIME_ENV": RUNTIME_NAME,
        "ELYRA_RUN_NAME": f"{node.pipeline}-{storage.safe_run_id(run_id)}",
    })
    return env


def papermill_parameters(node: NodeSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """What Papermill injects: the node's environment variables, then its pipeline parameters."""
    missing = [name for name in node.parameters if name not in params]
    if missing:
        raise NodeFailed(f"node {node.name}: no value for pipeline parameters {missing}")
    return {**node.env, **{name: params[name] for name in node.parameters}}


def run_node(node: NodeSpec, params: Mapping[str, Any], run_id: str, s3: Any = None,
             env_base: Mapping[str, str] | None = None,
             s3_keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``node`` for the pipeline run ``run_id``; returns where its results went.

    ``s3_keys``: what the node's code gets as S3_ACCESS_KEY/S3_SECRET_KEY (none: none).
    """
    s3 = s3 or storage.client_from_env()
    with tempfile.TemporaryDirectory(prefix=f"skiff-{node.name}-") as tmp:
        workdir = Path(tmp)
        _fetch(s3, node, run_id, workdir)
        env = node_env(node, params, run_id, env_base, s3_keys)
        target = workdir / node.filename
        if not target.is_file():
            raise NodeFailed(f"node {node.name}: {node.filename} is not in its archive "
                             f"s3://{node.bucket}/{storage.archive_key(node.prefix, node.name)}")
        node_folder = storage.node_prefix(node.prefix, run_id, node.name)
        if node.kind == NOTEBOOK:
            executed = _run_notebook(s3, node, target, workdir, env, papermill_parameters(node, params),
                                     node_folder)
        else:
            executed = _run_script(s3, node, target, workdir, env, node_folder)
        files: list[dict[str, Any]] = []
        outputs = _store_outputs(s3, node, run_id, workdir, files)
    return {"node": node.name, "executed": executed, "outputs": outputs, "files": files,
            "run_folder": f"s3://{node.bucket}/{storage.run_prefix(node.prefix, run_id)}/"}


def _fetch(s3: Any, node: NodeSpec, run_id: str, workdir: Path) -> None:
    """The node's archive, then the upstream outputs it reads."""
    archive = storage.archive_key(node.prefix, node.name)
    storage.unpack(storage.get_bytes(s3, node.bucket, archive), workdir)
    if not node.inputs:
        return
    outputs = storage.outputs_prefix(node.prefix, run_id)
    available = storage.list_keys(s3, node.bucket, outputs)
    for pattern in node.inputs:
        keys = storage.matching(available, pattern)
        if not keys:
            raise NodeFailed(f"node {node.name}: input {pattern!r} (an output of an earlier node) is "
                             f"not in s3://{node.bucket}/{outputs}/; found {available or 'nothing'}")
        for key in keys:
            dest = workdir / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(storage.get_bytes(s3, node.bucket, f"{outputs}/{key}"))
    log.info("node %s: inputs %s from s3://%s/%s/", node.name, node.inputs, node.bucket, outputs)


def _run_notebook(s3: Any, node: NodeSpec, notebook: Path, workdir: Path, env: dict[str, str],
                  parameters: dict[str, Any], node_folder: str) -> str:
    import papermill

    executed = workdir / ".skiff" / notebook.name
    executed.parent.mkdir()
    key = f"{node_folder}/{notebook.name}"
    failure: BaseException | None = None
    log.info("node %s: papermill %s with parameters %s", node.name, node.filename, sorted(parameters))
    with _environ(env):
        try:
            # "python3" is the worker venv's own kernel (ipykernel), whatever the
            # notebook was last saved with in JupyterLab.
            papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                       kernel_name="python3", cwd=str(notebook.parent),
                                       log_output=True, progress_bar=False)
        except Exception as exc:  # the executed notebook explains it: keep it, then fail
            failure = exc
    if executed.is_file():
        storage.put_bytes(s3, node.bucket, key, executed.read_bytes(), "application/x-ipynb+json")
    if failure is not None:
        raise NodeFailed(f"node {node.name}: {node.filename} failed ({type(failure).__name__}: "
                         f"{failure}); executed notebook: s3://{node.bucket}/{key}") from failure
    return f"s3://{node.bucket}/{key}"


def _run_script(s3: Any, node: NodeSpec, script: Path, workdir: Path, env: dict[str, str],
                node_folder: str) -> str:
    key = f"{node_folder}/{script.name}.log"
    lines: list[str] = []
    log.info("node %s: python %s", node.name, node.filename)
    with subprocess.Popen([sys.executable, "-u", str(script)], cwd=script.parent, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)  # the task log shows the script's output live
    storage.put_bytes(s3, node.bucket, key, "".join(lines).encode(), "text/plain")
    if proc.returncode != 0:
        tail = "".join(lines[-20:])
        raise NodeFailed(f"node {node.name}: {node.filename} exited with {proc.returncode}; "
                         f"log: s3://{node.bucket}/{key}\n{tail}")
    return f"s3://{node.bucket}/{key}"


def _store_outputs(s3: Any, node: NodeSpec, run_id: str, workdir: Path,
                   recorded: list[dict[str, Any]] | None = None) -> list[str]:
    """Upload the declared outputs; ``recorded`` gets each one's path, location, size and digest."""
    outputs = storage.outputs_prefix(node.prefix, run_id)
    stored = []
    for pattern in node.outputs:
        files = sorted(p for p in workdir.glob(pattern.removeprefix("./")) if p.is_file())
        files = [p for p in files if ".skiff" not in p.relative_to(workdir).parts]
        if not files:
            raise NodeFailed(f"node {node.name}: declared output {pattern!r} was not produced "
                             f"(looked in the node's folder, where {node.filename} ran)")
        for path in files:
            relative = path.relative_to(workdir).as_posix()
            data = path.read_bytes()
            storage.put_bytes(s3, node.bucket, f"{outputs}/{relative}", data, "application/octet-stream")
            stored.append(f"s3://{node.bucket}/{outputs}/{relative}")
            if recorded is not None:
                recorded.append({"path": relative, "location": stored[-1], "size_bytes": len(data),
                              "digest": f"sha256:{hashlib.sha256(data).hexdigest()}"})
    return stored


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside (the kernel Papermill starts inherits it), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def airflow_task(node: Mapping[str, Any]) -> dict[str, Any]:
    """The body of every task of a generated DAG: this run's parameters and id from Airflow."""
    from airflow.sdk import get_current_context

    from skiff.catalog import pipelines as lineage

    context = get_current_context()
    spec = NodeSpec.from_json(dict(node))
    params = dict(context["params"])
    result = run_node(spec, params, str(context["run_id"]), s3_keys=owner_s3_keys(spec.owner))
    lineage.node_lineage(context, spec, params, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skiff.pipelines.runner",
        description="Run one node of a Skiff pipeline (S3 settings from S3_HOST, S3_PORT, "
                    "S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION). Outside Airflow (an exported "
                    "Compose file) the node's code gets the same S3 keys: whoever runs it "
                    "decides whose they are.")
    parser.add_argument("--node-json", required=True, help="the node's spec (JSON)")
    parser.add_argument("--params-json", default="{}", help="the pipeline parameters' values (JSON)")
    parser.add_argument("--run-id", default=os.environ.get("SKIFF_PIPELINE_RUN_ID"),
                        help="the pipeline run (default: $SKIFF_PIPELINE_RUN_ID)")
    args = parser.parse_args(argv)
    if not args.run_id:
        parser.error("--run-id or SKIFF_PIPELINE_RUN_ID is needed (nodes of one run share their outputs)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run_node(NodeSpec.from_json(args.node_json), json.loads(args.params_json), args.run_id,
                          s3_keys={k: os.environ[k] for k in S3_KEYS if k in os.environ})
    except (NodeFailed, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
