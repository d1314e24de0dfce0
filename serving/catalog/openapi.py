"""A short OpenAPI 3.1 description of the catalog's API (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

PATHS: dict[str, dict[str, str]] = {
    "/api/v1/me": {"get": "The caller: user, teams, roles, admin; provisions their data sources"},
    "/api/v1/users/{name}/provision": {"post": "Provision a user's data sources (service/admin)"},
    "/api/v1/users/{name}/s3": {"get": "A person's own S3 keys: to them (provisions first), "
                                       "or to the service (their pipelines' nodes)"},
    "/api/v1/projects": {"get": "Projects visible to the caller", "post": "Create a project"},
    "/api/v1/projects/{name}": {"get": "A project and its visible assets",
                                "patch": "Change description, team, access",
                                "delete": "Delete a project (its assets stay)"},
    "/api/v1/projects/{name}/assets/{kind}/{asset}": {"put": "Add an asset to a project",
                                                      "delete": "Remove it"},
    "/api/v1/assets": {"get": "Visible assets (?kind=&project=&owner=&q=)",
                       "post": "Register an asset"},
    "/api/v1/assets/{kind}/{name}": {"get": "An asset", "patch": "Change an asset",
                                     "delete": "Delete an asset"},
    "/api/v1/assets/{kind}/{name}/versions": {"get": "Recorded versions"},
    "/api/v1/assets/{kind}/{name}/history": {"get": "A version and its inputs, transitively"},
    "/api/v1/assets/data_source/{name}/credentials": {
        "get": "The secret of the caller's own managed store"},
    "/api/v1/workflows/check": {"post": "Check the visibility rule for a workflow to be"},
    "/api/v1/workflows/by-dag/{dag_id}": {"get": "The workflow registered for an Airflow DAG"},
    "/api/v1/workflows/by-dag/{dag_id}/runnable": {"post": "Re-check the rule at run start"},
    "/api/v1/lineage": {"post": "An OpenLineage 2-0-2 RunEvent (service/admin)"},
    "/api/v1/runs/{run_id}": {"get": "A run with its inputs and outputs"},
}


def document() -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    paths = {
        path: {method: {"summary": summary, "security": [{"keycloak": []}],
                        "responses": {"200": {"description": "OK"},
                                      "4XX": {"description": "Refused",
                                              "content": {"application/json": {"schema": error}}}}}
               for method, summary in methods.items()}
        for path, methods in PATHS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Skiff catalog", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"keycloak": {"type": "http", "scheme": "bearer",
                                             "bearerFormat": "JWT"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "message"],
                                  "properties": {"error": {"type": "string"},
                                                 "message": {"type": "string"}}}},
        },
    }
