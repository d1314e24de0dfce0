"""`skiff score` refuses malformed arguments before it talks to any service."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from skiff.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("args", "message"), [
    (["in.csv", "--model", "bracelet@champion", "--out", "results/"],
     "--out must be an s3://bucket/path URI, got 'results/'"),
    (["in.csv", "--model", "bracelet@champion", "--out", "s3://datasets"],
     "must name a bucket and a path"),
    (["in.csv", "--model", "bracelet", "--out", "s3://datasets/scores"],
     "--model must be NAME@ALIAS"),
])
def test_malformed_arguments_are_named(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["score", *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_model_and_out_are_required() -> None:
    result = CliRunner().invoke(main, ["score", "in.csv", "--out", "s3://datasets/x"])
    assert result.exit_code == 2
    assert "Missing option '--model'" in result.output
