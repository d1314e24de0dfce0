"""``skiff score INPUT --model NAME@ALIAS --out s3://bucket/path``: a batch through Spark.

Everything that can be wrong is checked before Spark is asked (the input exists,
the model and alias exist, the output path is free); a local input is then
streamed to the S3 store, where every Spark worker can read it, and the job runs
in the Spark venv (``python -m skiff.scoring.job``) against Spark Connect, its
task counts turned into a progress bar here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.scoring.locations import LocationError, S3Location
from skiff.scoring.model import ModelError, resolve
from skiff.scoring.store import check_input, check_output, upload
from skiff.services import mlflow, s3, spark

out = Console()
err = Console(stderr=True)
UPLOAD_BUCKET = "datasets"
UPLOAD_PREFIX = "scoring-inputs"


class _UploadBar:
    """minio's progress protocol -> a rich bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def set_meta(self, object_name: str, total_length: int) -> None:
        self.task = self.progress.add_task(f"uploading {Path(object_name).name}", total=total_length)

    def update(self, length: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, length)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(1)


def stage_input(ctx: Context, source: str) -> S3Location:
    """The input in the S3 store: checked if it is there already, uploaded if it is a local file."""
    client = s3.root_client(ctx)
    if source.startswith("s3://"):
        where = S3Location.parse(source, "INPUT")
        check_input(client, where)
        return where
    path = Path(source)
    if not path.exists():
        raise LocationError(f"INPUT {source} does not exist")
    if not path.is_file():
        raise LocationError(f"INPUT {source} is not a file")
    where = S3Location(UPLOAD_BUCKET, f"{UPLOAD_PREFIX}/{time.strftime('%Y%m%dT%H%M%S')}-{path.name}")
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TimeElapsedColumn(), console=err) as progress:
        upload(client, path, where, _UploadBar(progress))
    err.print(f"uploaded {source} to {where.uri}", highlight=False)
    return where


def run_job(ctx: Context, source: S3Location, model: str, dest: S3Location) -> dict[str, object]:
    """The job in the Spark venv; its PROGRESS lines drive a bar, its last stdout line is the result."""
    python = spark.python(ctx)
    if not python.exists():
        raise click.ClickException("Spark is not installed: run `skiff up spark`")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ctx.root / "src"), str(ctx.root)]),
           "SPARK_REMOTE": spark.client_remote(ctx),
           "MLFLOW_TRACKING_URI": mlflow.tracking_uri(ctx)}
    cmd = [str(python), "-m", "skiff.scoring.job", "--input", source.uri, "--model", model,
           "--out", dest.uri]
    tail: list[str] = []
    error = ""
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} tasks"), TimeElapsedColumn(),
                  console=err) as progress, subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        task = progress.add_task("scoring on Spark", total=None)
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            if line.startswith("PROGRESS "):
                done, total, _read = (int(x) for x in line.split()[1:4])
                progress.update(task, completed=done, total=total)
            elif line.startswith("ERROR "):
                error = line.removeprefix("ERROR ").strip()
            else:
                tail = [*tail[-30:], line.rstrip()]
        stdout = proc.stdout.read()
    if proc.returncode != 0:
        _fail(error or ("the Spark job failed:\n" + "\n".join(tail)))
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@click.command()
@click.argument("source", metavar="INPUT")
@click.option("--model", "model_ref", required=True, metavar="NAME@ALIAS",
              help="Registered model and alias to score with, e.g. bracelet@champion.")
@click.option("--out", "out_uri", required=True, metavar="s3://BUCKET/PATH",
              help="Where the results go: PATH/outcome=scored and PATH/outcome=rejected (Parquet).")
def score(source: str, model_ref: str, out_uri: str) -> None:
    """Score a CSV (local path or s3://bucket/key) with a registered model on Spark.

    Rows that fail the model's feature schema go to the rejects with their reason;
    the run, with the model version used and the counts, is recorded in MLflow.
    """
    ctx = Context.discover()
    try:
        dest = S3Location.parse(out_uri, "--out")
        mv = resolve(mlflow.tracking_uri(ctx), model_ref)
        try:
            spark.ready(ctx)
        except NotReady as exc:
            raise click.ClickException(f"Spark is not ready ({exc}): run `skiff up spark`") from None
        check_output(s3.root_client(ctx), dest)
        where = stage_input(ctx, source)
    except (LocationError, ModelError) as exc:
        _fail(str(exc))
    err.print(f"scoring {where.uri} with {mv.name} version {mv.version} ({model_ref})", highlight=False)
    result = run_job(ctx, where, model_ref, dest)
    table = Table(show_header=False, box=None)
    for key in ("model_name", "model_version", "input", "scored_output", "rejects_output",
                "input_rows", "scored_rows", "rejected_rows", "mlflow_run_id"):
        table.add_row(key, str(result[key]))
    out.print(table)
