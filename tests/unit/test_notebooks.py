"""The notebooks in notebooks/: saved clean, parameterised for Papermill, copied to user-workspace/.

Running them is tests/integration/test_notebooks_events.py's (and the bracelet tests').
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def _parameters(notebook: dict[str, Any]) -> dict[str, Any]:
    """The names and default values of the cell tagged "parameters" (what Papermill overrides)."""
    (cell,) = [c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    values = {}
    for node in ast.parse(_source(cell)).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name), ast.unparse(node)
        values[target.id] = ast.literal_eval(node.value)
    return values


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"bracelet_train.ipynb", "kmeans_example.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_saved_without_outputs(path: Path) -> None:
    # Outputs and execution counts make every run a diff, and may hold data or secrets.
    notebook = _load(path)
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, _source(cell)[:80]
            ast.parse(_source(cell))  # no syntax error waits for a run to be found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_report_progress_with_a_papermill_parameter(path: Path) -> None:
    params = _parameters(_load(path))
    assert isinstance(params["progress_every"], int) and params["progress_every"] >= 1
    assert params["send_events"] is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_users_get_the_same_notebooks(path: Path) -> None:
    # JupyterHub copies user-workspace/ into new users' homes.
    copy = ROOT / "user-workspace" / "notebooks" / path.name
    assert copy.is_file() and copy.read_bytes() == path.read_bytes(), \
        f"user-workspace/notebooks/{path.name} differs from notebooks/: copy it again"


def test_the_kmeans_example_downloads_nothing() -> None:
    # Its data ship with the installed packages: the platform may have no Internet.
    code = "\n".join(_source(c) for c in _load(ROOT / "notebooks" / "kmeans_example.ipynb")["cells"]
                     if c["cell_type"] == "code")
    assert "fetch_" not in code and "http" not in code
    assert _parameters(_load(ROOT / "notebooks" / "kmeans_example.ipynb"))["dataset"] in (
        "digits", "iris", "wine", "heart")
