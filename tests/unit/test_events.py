"""skiff.events without Kafka: where an event's run comes from, and what its payload looks like."""

from __future__ import annotations

import math
from typing import Any

import pytest

import skiff.events as events
from skiff.events import context, transport


@pytest.fixture(autouse=True)
def no_overrides() -> Any:
    context._overrides.clear()
    yield
    context._overrides.clear()


def test_an_airflow_task_is_a_run_of_its_dag() -> None:
    ctx = context.resolve({"AIRFLOW_CTX_DAG_ID": "model_monitoring",
                           "AIRFLOW_CTX_DAG_RUN_ID": "manual__2026", "AIRFLOW_CTX_TASK_ID": "check",
                           "AIRFLOW_CTX_DAG_OWNER": "alice"})
    assert ctx == context.RunContext(run="model_monitoring/manual__2026", step="check",
                                     user="alice", workflow="model_monitoring")


def test_a_notebook_server_groups_its_events_in_one_run_per_kernel() -> None:
    one = context.resolve({"JUPYTERHUB_USER": "bob"})
    assert one.run.startswith("notebook/bob/") and one.user == "bob" and one.workflow == ""
    assert context.resolve({"JUPYTERHUB_USER": "bob"}).run == one.run
    context.new_run()
    assert context.resolve({"JUPYTERHUB_USER": "bob"}).run != one.run


def test_explicit_values_win_over_the_environment() -> None:
    env = {"AIRFLOW_CTX_DAG_ID": "d", "AIRFLOW_CTX_DAG_RUN_ID": "r", "SKIFF_USER": "carol",
           "SKIFF_RUN_ID": "custom/run"}
    assert context.resolve(env) == context.RunContext("custom/run", "", "carol", "d")
    context.set_context(step="train")
    assert context.resolve(env, user="dave").step == "train"
    assert context.resolve(env, user="dave").user == "dave"
    with pytest.raises(TypeError, match="unknown field"):
        context.set_context(project="x")


def test_transport_settings_come_from_the_task_environment() -> None:
    cfg = transport.config({"KAFKA_HOST": "kafka", "KAFKA_PORT": "29092", "S3_ACCESS_KEY": "k",
                            "S3_SECRET_KEY": "s", "SKIFF_EVENTS_TOPIC": "t",
                            "SKIFF_EVENTS_INLINE_BYTES": "10"})
    assert (cfg.bootstrap_servers, cfg.topic, cfg.inline_bytes) == ("kafka:29092", "t", 10)
    assert cfg.s3["S3_ACCESS_KEY"] == "k"


def test_payloads_are_plain_json() -> None:
    class Numpyish:
        def tolist(self) -> list[float]:
            return [1.0, math.nan]

    assert events._to_json({"a": Numpyish(), "b": math.inf, "c": (1, 2)}) == \
        {"a": [1.0, None], "b": None, "c": [1, 2]}


def test_images_are_recognised_by_their_bytes() -> None:
    assert events._image_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert events._image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert events._image_type(b"<?xml version='1.0'?><svg></svg>") == "image/svg+xml"
    with pytest.raises(ValueError, match="not PNG, JPEG or SVG"):
        events._image_type(b"GIF89a")


def test_bad_calls_fail_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        events.emit("progress")
    with pytest.raises(ValueError, match="needs content"):
        events.emit("image", run="r", user="u")
    with pytest.raises(ValueError, match="unknown severity"):
        events.alert("x", severity="fatal")
    with pytest.raises(ValueError, match="not a number"):
        events.metrics({"loss": "low"})
    with pytest.raises(TypeError, match="matplotlib figure"):
        events.image("plot.png")


def test_file_names_are_safe_for_keys_and_headers() -> None:
    assert events._safe_name("../../etc/pass wd") == "pass_wd"
    assert events._safe_name("...") == "content"


def test_an_unreachable_kafka_is_an_error_not_a_silent_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real closed port: nothing listens on port 1.
    monkeypatch.setenv("KAFKA_HOST", "127.0.0.1")
    monkeypatch.setenv("KAFKA_PORT", "1")
    monkeypatch.setenv("S3_ACCESS_KEY", "unused")
    monkeypatch.setenv("S3_SECRET_KEY", "unused")
    transport.reset()
    try:
        with pytest.raises(events.EventsError, match=r"Kafka at 127\.0\.0\.1:1 is unreachable"):
            events.log("lost?", run="r", user="u")
    finally:
        transport.reset()
