"""The served version's ONNX file and its description, for devices that score on their own.

"Serving batch" on a device: it downloads the champion's file once, checks its
SHA-256 against ``GET /v1/model``, and polls with ``If-None-Match`` to learn of a
new champion. The bytes are the registry's artifact as it is, never re-exported.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from serving.model_server import api
from serving.model_server.model import LoadedModel


def model_info(model: LoadedModel) -> dict[str, Any]:
    """What a device needs to run the served version itself: schema, signature, file digest."""
    onnx = model.onnx
    if onnx is None:
        raise api.ApiError(503, "no_model", f"{model.name} version {model.version} has no ONNX file "
                           "held for download")
    return {
        "name": model.name,
        "version": model.version,
        "onnx": {"path": "/v1/model/onnx", "file": onnx.path, "sha256": onnx.sha256,
                 "size": len(onnx.data)},
        # The contract session.py checks (not imported here: it needs onnxruntime).
        "input": {"name": "features", "type": "float32", "shape": [None, len(model.schema.names)],
                  "columns": list(model.schema.names),
                  "missing": "NaN where a nullable feature was not measured"},
        "outputs": {"label": "int64 [N], 1: heart disease",
                    "probabilities": "float32 [N, 2], column 1: probability of heart disease"},
        "feature_schema": model.schema.to_json(),
        "signature": onnx.signature,
    }


def onnx_response(model: LoadedModel, request: Request) -> Response:
    info = model_info(model)  # the same 503 when there is no file
    assert model.onnx is not None
    response = Response(model.onnx.data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{model.name}-{model.version}.onnx"')
    response.headers["X-Model-Name"] = model.name
    response.headers["X-Model-Version"] = model.version
    response.headers["X-Model-SHA256"] = info["onnx"]["sha256"]
    # A device polls with If-None-Match and downloads only when the champion changed.
    response.set_etag(info["onnx"]["sha256"])
    response.headers["Cache-Control"] = "no-cache"
    response.make_conditional(request)  # 304 without the body when the ETag matches
    return response
