"""The model server: the bracelet model's REST API (Flask under gunicorn).

It serves the ONNX model that MLflow's alias (``MODEL_NAME@MODEL_ALIAS``) points
to, swapping in a new version without a restart, and captures every prediction
through a local outbox that a background thread publishes to Kafka.

Modules that the CLI venv's unit tests import (``api``, ``capture``, ``config``,
``model``, ``openapi``, ``registry``) stay free of Flask, numpy and onnxruntime;
``app``, ``metrics`` and ``session`` need the serving venv.
"""
