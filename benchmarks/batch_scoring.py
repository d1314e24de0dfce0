"""Batch scoring: Spark + ONNX (``skiff score``'s job) against one pandas + scikit-learn process.

    python -m benchmarks batch_scoring [--rows 10000000] [--repeat 3] [--keep=PATH.csv]

Generates a CSV of ``--rows`` rows (streamed to disk in chunks; one row in a
thousand deliberately invalid), then scores it twice with the champion
(MODEL_NAME@MODEL_ALIAS) in the same run on the same machine:

- **Spark**: the file is uploaded to the S3 store (timed apart), then the job
  ``skiff score`` runs (Spark Connect, CSV read in partitions, validation,
  ONNX Runtime in ``mapInArrow``, Parquet to S3, counts, the MLflow run). Peak
  memory: the highest sum, over 0.2 s samples, of the RSS of the Connect
  server (the driver), the executors' JVMs, their Python workers and the
  client; the master's and workers' daemons are left out (they idle the same
  either way).
- **Baseline**: one Python process (Airflow's venv, which has scikit-learn)
  reads the CSV with ``pandas.read_csv(chunksize=...)``, validates each chunk
  with the same rules (:mod:`skiff.scoring.validation`), scores the valid rows
  with the scikit-learn flavour of the same registered version (logged next to
  the ONNX model by the training notebook) and writes Parquet locally. Peak
  memory: that process's peak RSS.

Prints rows/s of each, the ratio, and the peak memory of each (medians of ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

ROWS = 10_000_000
CHUNK = 500_000
BAD_EVERY = 1000
# Processes of a Spark job, by what their command line contains.
SPARK_PROCESSES = ("SparkConnectServer", "CoarseGrainedExecutorBackend", "pyspark.daemon",
                   "pyspark.worker", "skiff.scoring.job")


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A CSV of valid bracelet rows (numeric encoding), every BAD_EVERY-th age out of range."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from skiff.bracelet.features import FEATURES

    rng = np.random.default_rng(seed)
    written = 0
    with path.open("wb") as f:
        f.write((",".join(["id", *(feat.name for feat in FEATURES)]) + "\n").encode())
        while written < rows:
            n = min(CHUNK, rows - written)
            ids = np.arange(written, written + n)
            columns: dict[str, pa.Array] = {"id": pa.array(ids)}
            for feat in FEATURES:
                if feat.codes:
                    values = rng.choice(sorted(set(feat.codes.values())), n)
                elif feat.integer:
                    values = rng.integers(int(feat.minimum), int(feat.maximum) + 1, n)
                else:
                    values = np.round(rng.uniform(feat.minimum, feat.maximum, n), 1)
                if feat.name == "age":
                    values = np.where(ids % BAD_EVERY == 0, 150, values)
                missing = (rng.random(n) < 0.05) if feat.nullable else None
                columns[feat.name] = pa.array(values, mask=missing)
            # Arrow's CSV writer: an order of magnitude faster than DataFrame.to_csv.
            pacsv.write_csv(pa.table(columns), f,
                            pacsv.WriteOptions(include_header=False, quoting_style="none"))
            written += n


class RssSampler(threading.Thread):
    """The peak, over samples, of the summed RSS of the Spark processes of a job."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            total = 0
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if proc.info["memory_info"] and any(p in cmdline for p in SPARK_PROCESSES):
                    total += proc.info["memory_info"].rss
            self.peak = max(self.peak, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def remove(client: Any, *places: Any) -> None:
    """Delete a run's input copy and outputs from the S3 store: a 10M-row run leaves GBs."""
    from minio.deleteobjects import DeleteObject

    for where in places:
        names = [DeleteObject(o.object_name) for o in
                 client.list_objects(where.bucket, prefix=where.key, recursive=True)]
        for error in client.remove_objects(where.bucket, names):
            print(f"could not delete {error.name}: {error.message}", file=sys.stderr)


def run_spark(csv: Path, model_ref: str) -> dict[str, float]:
    from skiff.native.context import Context
    from skiff.scoring.locations import S3Location
    from skiff.scoring.store import upload
    from skiff.services import mlflow, s3, spark

    ctx = Context.discover()
    tag = uuid.uuid4().hex[:10]
    source = S3Location("datasets", f"benchmarks/batch-scoring-{tag}.csv")
    out = S3Location("datasets", f"benchmarks/batch-scoring-{tag}-out")
    t0 = time.perf_counter()
    upload(s3.root_client(ctx), csv, source)
    upload_s = time.perf_counter() - t0
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(spark.python(ctx)), "-m", "skiff.scoring.job", "--input", source.uri,
         "--model", model_ref, "--out", out.uri],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ctx.root / "src"), str(ctx.root)]),
             "SPARK_REMOTE": spark.client_remote(ctx), "MLFLOW_TRACKING_URI": mlflow.tracking_uri(ctx)},
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    if done.returncode != 0:
        sys.exit(f"the Spark job failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    remove(s3.root_client(ctx), source, out)
    return {"seconds": seconds, "upload_seconds": upload_s, "peak_rss": peak,
            "scored": result["scored_rows"], "rejected": result["rejected_rows"],
            "input": result["input_rows"], "model_version": result["model_version"]}


def baseline(csv: Path, tracking_uri: str, run_id: str, out_dir: Path) -> None:
    """The single-process loop (run in Airflow's venv); prints its figures as JSON."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skiff.bracelet.features import FeatureSchema
    from skiff.scoring.validation import check_columns

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/sklearn")
    schema = FeatureSchema()
    t0 = time.perf_counter()
    rows = scored = 0
    writers: dict[str, pq.ParquetWriter] = {}
    for chunk in pd.read_csv(csv, chunksize=CHUNK, dtype=str, keep_default_na=False):
        checked = check_columns(schema, {n: chunk[n] for n in schema.names})
        valid = checked.valid
        features = pd.DataFrame(checked.matrix[valid], columns=list(schema.names))
        probabilities = model.predict_proba(features)[:, 1] if valid.any() else np.empty(0)
        good = chunk[valid].assign(prediction=(probabilities >= 0.5).astype("int32"),
                                   probability=probabilities)
        bad = chunk[~valid].assign(reason=[r for r in checked.reasons if r is not None])
        for name, frame in (("scored", good), ("rejected", bad)):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if name not in writers:
                writers[name] = pq.ParquetWriter(out_dir / f"{name}.parquet", table.schema)
            writers[name].write_table(table)
        rows += len(chunk)
        scored += int(valid.sum())
    for writer in writers.values():
        writer.close()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "input": rows, "scored": scored,
                      "rejected": rows - scored}))


def run_baseline(csv: Path, run_id: str) -> dict[str, float]:
    from skiff.native.context import Context
    from skiff.services import mlflow

    ctx = Context.discover()
    python = ctx.venv("airflow") / "bin" / "python"
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [str(python), "-m", "benchmarks.batch_scoring", "--baseline", str(csv),
             "--tracking-uri", mlflow.tracking_uri(ctx), "--run-id", run_id, "--out-dir", out],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ctx.root / "src"), str(ctx.root)])},
            capture_output=True, text=True, check=False, cwd=ctx.root)
    if done.returncode != 0:
        sys.exit(f"the pandas baseline failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks batch_scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians are printed")
    parser.add_argument("--keep", help="keep the generated CSV at this path (reused if it exists)")
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.baseline:
        baseline(Path(args.baseline), args.tracking_uri, args.run_id, Path(args.out_dir))
        return

    from skiff.native.context import Context
    from skiff.scoring.model import resolve
    from skiff.services import mlflow

    ctx = Context.discover()
    s = ctx.settings
    model_ref = f"{s.model_name}@{s.model_alias}"
    mv = resolve(mlflow.tracking_uri(ctx), model_ref)
    rows = args.rows
    ours: list[dict[str, float]] = []
    base: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(args.keep) if args.keep else Path(tmp) / "batch.csv"
        if not csv.exists():
            t0 = time.perf_counter()
            generate(csv, rows)
            print(f"generated {rows:,} rows ({csv.stat().st_size / 2**20:,.0f} MiB) "
                  f"in {time.perf_counter() - t0:.0f}s", flush=True)
        print(f"model {model_ref} = version {mv.version}; {os.cpu_count()} CPUs; "
              f"{args.repeat} run(s) of each", flush=True)
        for i in range(args.repeat):
            ours.append(run_spark(csv, model_ref))
            base.append(run_baseline(csv, mv.run_id))
            print(f"run {i + 1}: spark+onnx {rows / ours[-1]['seconds']:,.0f} rows/s, "
                  f"pandas+sklearn {rows / base[-1]['seconds']:,.0f} rows/s", flush=True)
    for name, runs in (("spark+onnx", ours), ("pandas+sklearn", base)):
        for r in runs:
            assert r["input"] == rows and r["scored"] + r["rejected"] == rows, (name, r)
    spark_s = median(r["seconds"] for r in ours)
    base_s = median(r["seconds"] for r in base)
    spark_rss = median(r["peak_rss"] for r in ours)
    base_rss = median(r["peak_rss"] for r in base)
    print(f"medians of {args.repeat}:")
    print(f"{'':16}{'rows/s':>12}{'seconds':>10}{'peak RSS MiB':>14}")
    print(f"{'spark+onnx':16}{rows / spark_s:12,.0f}{spark_s:10.1f}{spark_rss / 2**20:14,.0f}"
          f"   (+ upload {median(r['upload_seconds'] for r in ours):.1f}s)")
    print(f"{'pandas+sklearn':16}{rows / base_s:12,.0f}{base_s:10.1f}{base_rss / 2**20:14,.0f}")
    print(f"ratio spark/pandas: {base_s / spark_s:.2f}x rows/s, {spark_rss / base_rss:.2f}x peak memory; "
          f"rejected {ours[0]['rejected']:,.0f} of {rows:,} (both)")


if __name__ == "__main__":
    main()
