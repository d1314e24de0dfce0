"""A pipeline's place in the catalog: its access level, team and used assets, checked and registered.

At submission the Elyra runtime (skiff.pipelines.processor) asks the catalog
whether a workflow of the pipeline's access level may use the assets it declares
(``POST /api/v1/workflows/check``) before anything is uploaded or written, so a
refused pipeline leaves no DAG behind; after the DAG file is written it registers
(or updates) ``workflow/<dag id>``. Both as the submitting user, with the token the
catalog client finds in the notebook server (their JupyterHub auth_state). Nothing
here imports Elyra, so the tests drive it from the CLI's venv.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skiff.catalog.client import ACCESS_LEVELS, CatalogError, Client, parse_ref
from skiff.catalog.workflows import ensure_workflow


class GovernanceError(ValueError):
    """The catalog refuses the pipeline (the message names the asset), or cannot be asked.

    A ValueError, which Elyra shows the user as the submission's error.
    """


@dataclass(frozen=True)
class Declared:
    """What a pipeline declares about itself in the catalog."""

    access: str = "private"
    team: str | None = None
    uses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.access not in ACCESS_LEVELS:
            raise GovernanceError(f"pipeline access {self.access!r} is not one of {', '.join(ACCESS_LEVELS)}")
        for ref in self.uses:
            try:
                parse_ref(ref)
            except ValueError as exc:
                raise GovernanceError(f"used asset: {exc}") from None


def split_uses(values: Iterable[Any]) -> list[str]:
    """Assets named in properties: lists, or text with commas, spaces or new lines; each once."""
    found: list[str] = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else re.split(r"[\s,]+", str(value or ""))
        for item in items:
            text = str(item).strip()
            if text and text not in found:
                found.append(text)
    return found


def check(client: Client, declared: Declared) -> None:
    """GovernanceError naming the offending asset if the catalog refuses the combination."""
    try:
        client.check_workflow(declared.access, declared.uses, declared.team)
    except CatalogError as exc:
        raise _explained(exc, "submitting") from None


def register(client: Client, dag_id: str, declared: Declared, description: str = "",
             notebook: str | None = None) -> dict[str, Any]:
    """``workflow/<dag_id>`` (engine elyra) with the declared access, team and uses."""
    try:
        return ensure_workflow(client, dag_id, engine="elyra", dag_id=dag_id, uses=declared.uses,
                               access=declared.access, team=declared.team,
                               description=description[:500], notebook=notebook)
    except CatalogError as exc:
        raise _explained(exc, "registering") from None


def client_for_submission(environ: Mapping[str, str] = os.environ) -> Client | None:
    """The catalog as the submitting user, or None where the platform has no catalog."""
    if not environ.get("CATALOG_URL"):
        return None
    try:
        return Client(environ["CATALOG_URL"])
    except CatalogError as exc:
        raise GovernanceError(f"the catalog cannot be asked about this pipeline: {exc}") from None


def _explained(exc: CatalogError, doing: str) -> GovernanceError:
    if exc.error in ("visibility", "unknown_asset"):
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        detail = message or str(exc)
        asset = f" Offending asset: {exc.asset}." if exc.asset else ""
        return GovernanceError(f"The catalog refuses this pipeline: {detail}.{asset} Change the "
                               "pipeline's access level or the asset's, or use another asset.")
    return GovernanceError(f"{doing} the pipeline in the catalog failed: {exc}")
