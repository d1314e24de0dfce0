"""Print a batch's Parquet outputs as JSON, read back through Spark Connect.

A script, not a test: tests/integration/test_batch_scoring.py runs it with the
Spark venv's Python (the CLI venv has no pyspark).

    SPARK_REMOTE=sc://127.0.0.1:15002/;authorization=... python read_scores.py --out s3://bucket/path
"""

from __future__ import annotations

import argparse
import json
import os

from pyspark.sql import SparkSession

from skiff.scoring.locations import S3Location


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
    out = S3Location.parse(args.out, "--out")
    result = {}
    for outcome in ("scored", "rejected"):
        frame = spark.read.parquet(out.child(f"outcome={outcome}").s3a)
        result[outcome] = [row.asDict() for row in frame.collect()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
