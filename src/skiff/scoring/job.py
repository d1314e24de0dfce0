"""The batch scoring job, sent to Spark Connect: read the CSV in partitions, validate, score, write.

One pass over the input: Spark splits the CSV into partitions, each task turns
its rows into Arrow batches, :mod:`skiff.scoring.partition` validates and scores
them, and one Parquet write partitioned by ``outcome`` puts the scored rows
under ``OUT/outcome=scored/`` and the rejected ones, each with its reason, under
``OUT/outcome=rejected/``. Every input column stays as the text that was read,
so a rejected row can be fixed and sent again as it was.

The counts are then taken from what was written and checked against the rows
Spark read from the input, observed as they streamed in (input = scored +
rejected), and the run is recorded in MLflow with the model version it used.

Run by ``skiff score`` (``python -m skiff.scoring.job`` in the Spark venv) and by
the ``batch_scoring`` DAG (:func:`run` from Airflow's venv); neither needs Java.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.scoring import partition
from skiff.scoring.locations import LocationError, S3Location
from skiff.scoring.model import ModelError, ScoringModel, load
from skiff.scoring.validation import CORRUPT_COLUMN, missing_columns

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

EXPERIMENT = "batch-scoring"
ARROW_BATCH_ROWS = 50_000
# What the executors import, shipped with each job: they have no skiff installed.
SHIPPED = ("skiff/__init__.py", "skiff/bracelet/__init__.py", "skiff/bracelet/features.py",
           "skiff/scoring/__init__.py", "skiff/scoring/partition.py",
           "skiff/scoring/validation.py")


class CountMismatch(RuntimeError):
    """Rows were lost or duplicated between the input and the outputs."""


@dataclass(frozen=True)
class Result:
    model_name: str
    model_version: str
    model_run_id: str
    input: str
    output: str
    scored_output: str
    rejects_output: str
    input_rows: int
    scored_rows: int
    rejected_rows: int
    mlflow_run_id: str


def session(remote: str) -> SparkSession:
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(remote).getOrCreate()  # type: ignore[return-value]


def ship_code(spark: SparkSession) -> None:
    """Add the modules the tasks import to the session, as one zip on the executors' path."""
    src = Path(__file__).resolve().parents[2]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in SHIPPED:
            archive.writestr(name, (src / name).read_bytes())
    data = buffer.getvalue()
    # Named by content: a session refuses a second artifact of the same name.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"skiff-scoring-{hashlib.sha256(data).hexdigest()[:16]}.zip"
        path.write_bytes(data)
        spark.addArtifacts(str(path), pyfile=True)


def read_csv(spark: SparkSession, where: str, model: ScoringModel) -> Any:
    """The input as text columns plus Spark's corrupt-record column, header checked first."""
    from pyspark.sql.types import StringType, StructField, StructType

    header = spark.read.option("header", True).csv(where).columns
    if len(set(header)) != len(header):
        raise LocationError(f"the input's header names a column twice: {header}")
    missing = missing_columns(model.schema, header)
    if missing:
        raise LocationError(f"the input lacks the columns {', '.join(missing)} that "
                            f"{model.name} version {model.version} needs "
                            f"(its features: {', '.join(model.schema.names)})")
    schema = StructType([StructField(c, StringType()) for c in header]
                        + [StructField(CORRUPT_COLUMN, StringType())])
    return (spark.read.schema(schema)
            .option("header", True).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
            # Text as it is in the file: validation decides what a value means.
            .option("ignoreLeadingWhiteSpace", False).option("ignoreTrailingWhiteSpace", False)
            .csv(where))


def outcome_counts(rows: Iterable[Any]) -> dict[str, int]:
    counts = {partition.SCORED: 0, partition.REJECTED: 0}
    for row in rows:
        counts[row[partition.OUTCOME]] = int(row["count"])
    return counts


def score(spark: SparkSession, model: ScoringModel, source: S3Location, out: S3Location) -> dict[str, int]:
    """Run the job; the counts of input, scored and rejected rows."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    ship_code(spark)
    # Fewer, larger Arrow batches per task: the per-batch cost is the JVM<->Python hop.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    frame = read_csv(spark, source.s3a, model)
    # The rows Spark's CSV reader produced, counted as they stream into the tasks (no
    # second read), against what the Parquet files hold afterwards.
    read = Observation("input")
    observed = frame.observe(read, F.count(F.lit(1)).alias("rows"))
    scored = observed.mapInArrow(partition.scorer(model.onnx, model.schema.to_json(), model.version),
                                 partition.output_schema(frame.columns))
    scored.write.partitionBy(partition.OUTCOME).mode("error").parquet(out.s3a)
    written = spark.read.parquet(out.s3a).groupBy(partition.OUTCOME).count().collect()
    counts = outcome_counts(written)
    counts["input"] = int(read.get["rows"])
    return counts


def record(tracking_uri: str, model: ScoringModel, source: S3Location, out: S3Location,
           counts: dict[str, int]) -> str:
    """The MLflow run of this batch: the model version used, where from and to, the counts."""
    # MLflow's usage telemetry keeps its session id in os.environ; inside an Airflow
    # worker that entry can vanish between calls and fail the run's logging (KeyError).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"score {model.name} v{model.version}") as run:
        mlflow.set_tags({"model_name": model.name, "model_version": model.version,
                         "model_alias": model.alias, "model_run_id": model.run_id})
        mlflow.log_params({"input": source.uri, "output": out.uri,
                           "scored_output": out.child(f"{partition.OUTCOME}={partition.SCORED}").uri,
                           "rejects_output": out.child(f"{partition.OUTCOME}={partition.REJECTED}").uri,
                           "model": f"{model.name}@{model.alias}", "model_version": model.version,
                           "model_source": model.source})
        mlflow.log_metrics({"input_rows": counts["input"], "scored_rows": counts[partition.SCORED],
                            "rejected_rows": counts[partition.REJECTED]})
        if counts["input"] != counts[partition.SCORED] + counts[partition.REJECTED]:
            mlflow.set_tag("counts_add_up", "false")
            raise CountMismatch(
                f"{counts['input']} input rows but {counts[partition.SCORED]} scored + "
                f"{counts[partition.REJECTED]} rejected were written to {out.uri}")
        mlflow.set_tag("counts_add_up", "true")
        return str(run.info.run_id)


def run(remote: str, tracking_uri: str, model_ref: str, source: str, out: str,
        show_progress: bool = False) -> Result:
    """Score ``source`` (an s3:// CSV) with ``model_ref``'s ONNX model into ``out``."""
    src = S3Location.parse(source, "the input")
    dest = S3Location.parse(out, "--out")
    model = load(tracking_uri, model_ref)
    spark = session(remote)
    if show_progress:
        spark.registerProgressHandler(_TaskProgress())
    try:
        counts = score(spark, model, src, dest)
    finally:
        # Releases the server-side session and its artifacts now, not at its idle timeout.
        spark.stop()
    run_id = record(tracking_uri, model, src, dest, counts)
    return Result(model.name, model.version, model.run_id, src.uri, dest.uri,
                  dest.child(f"{partition.OUTCOME}={partition.SCORED}").uri,
                  dest.child(f"{partition.OUTCOME}={partition.REJECTED}").uri,
                  counts["input"], counts[partition.SCORED], counts[partition.REJECTED], run_id)


class _TaskProgress:
    """Spark's task counts on stderr, one line per change (``skiff score`` shows them)."""

    def __init__(self) -> None:
        self._last = ""

    def __call__(self, stages: Any, inflight_tasks: int, operation_id: Any, done: bool) -> None:
        stages = list(stages or [])
        total = sum(s.num_tasks for s in stages)
        finished = sum(s.num_completed_tasks for s in stages)
        read = sum(s.num_bytes_read for s in stages)
        line = f"PROGRESS {finished} {total} {read}"
        # A machine-readable line: `skiff score` turns it into its progress bar.
        if total and line != self._last:
            self._last = line
            print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score an s3:// CSV on Spark (skiff score runs this).")
    parser.add_argument("--input", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--remote", default=os.environ.get("SPARK_REMOTE", "sc://127.0.0.1:15002"))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    args = parser.parse_args(argv)
    try:
        result = run(args.remote, args.tracking_uri, args.model, args.input, args.out,
                     show_progress=True)
    except (LocationError, ModelError, CountMismatch) as exc:
        # One line the CLI shows as the error, instead of a traceback.
        print(f"ERROR {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps(asdict(result)))

if __name__ == "__main__":
    main()
