"""The ``skiff-airflow`` runtime schema, for Elyra's ``metadata.schemas_providers`` entry point.

The schema (skiff-airflow.json, next to this module) is a runtime of Elyra's ``runtimes``
schemaspace whose name is our processor's: Elyra picks the processor of a
pipeline by the schema name of its runtime configuration. Its fields are the
Airflow side (address for links, DAG folder, worker image) and the S3 side
(endpoint, bucket, keys); there is no Kubernetes namespace and no git repository.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from elyra.metadata.schema import SchemasProvider

SCHEMA_FILE = "skiff-airflow.json"


def schema() -> dict[str, Any]:
    text = resources.files("skiff.pipelines").joinpath(SCHEMA_FILE).read_text()
    return dict(json.loads(text))


class SkiffRuntimeSchemas(SchemasProvider):
    def get_schemas(self) -> list[dict[str, Any]]:
        return [schema()]
