"""The Elyra metadata every workspace starts with: the "Skiff Airflow" runtime and its image.

Written into ``<venv>/share/jupyter/metadata/`` (Elyra's "factory" location, read
after the user's own), so every user sees them without configuring anything, and a
user's own instance of the same name wins. The runtime configuration holds no
address and no secret: its values name environment variables of the user's server
(``${SKIFF_AIRFLOW_URL}``...), which JupyterHub sets (skiff.services.workspace).

``python -m skiff.pipelines.defaults [--worker-image IMAGE]`` writes them into the
running interpreter's prefix (the workspace image's Dockerfile does this).
Standard library only: it runs before anything else is importable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Elyra's schema and processor name of our runtime, and the configuration's name
# (what `elyra-pipeline submit --runtime-config` takes).
SCHEMA_NAME = "skiff-airflow"
RUNTIME_CONFIG = "skiff"
RUNTIME_IMAGE = "skiff-airflow-worker"
PIPELINES_BUCKET = "pipelines"
DEFAULT_WORKER_IMAGE = "skiff/airflow:latest"


def runtime_config() -> dict[str, Any]:
    return {
        "display_name": "Skiff Airflow",
        "schema_name": SCHEMA_NAME,
        "metadata": {
            "runtime_type": "APACHE_AIRFLOW",
            "description": "The platform's Airflow: DAGs written to its DAG folder, files in its S3 store",
            "api_endpoint": "${SKIFF_AIRFLOW_URL}",
            "dag_folder": "${SKIFF_DAG_FOLDER}",
            "cos_endpoint": "${S3_ENDPOINT_URL}",
            "cos_bucket": PIPELINES_BUCKET,
            "cos_username": "${S3_ACCESS_KEY}",
            "cos_password": "${S3_SECRET_KEY}",
            "worker_image": "${SKIFF_WORKER_IMAGE}",
            "tags": ["skiff"],
        },
    }


def runtime_image(worker_image: str) -> dict[str, Any]:
    return {
        "display_name": "Skiff Airflow worker",
        "schema_name": "runtime-image",
        "metadata": {
            "description": "Where Skiff pipeline nodes run: the Airflow workers' Python "
                           "(Papermill, MLflow, scikit-learn, the skiff library)",
            "image_name": worker_image,
            "tags": ["skiff"],
        },
    }


def metadata_dir(prefix: Path) -> Path:
    return prefix / "share" / "jupyter" / "metadata"


def install(prefix: Path, worker_image: str = DEFAULT_WORKER_IMAGE) -> list[Path]:
    """Write (or refresh) both instances under ``prefix``; returns the files written."""
    written = []
    for schemaspace, name, content in (
        ("runtimes", RUNTIME_CONFIG, runtime_config()),
        ("runtime-images", RUNTIME_IMAGE, runtime_image(worker_image)),
    ):
        path = metadata_dir(prefix) / schemaspace / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(content, indent=2) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-image", default=DEFAULT_WORKER_IMAGE,
                        help="the image exported Compose files run nodes in (the Airflow image)")
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    args = parser.parse_args(argv)
    for path in install(args.prefix, args.worker_image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
