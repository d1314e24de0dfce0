"""Where a registered model's files may come from: this platform's MLflow only.

A model version's source is whatever its registrant wrote. The model server,
promotion and batch scoring load files only through our tracking server's artifact
proxy (``mlflow server --serve-artifacts``), so registering a version that points at
another host cannot make the platform fetch, score or serve a foreign model.
"""

from __future__ import annotations

from urllib.parse import urlsplit


class ForeignModel(ValueError):
    """The artifact URI names a store other than the platform's MLflow."""


def check(artifact_uri: str, tracking_uri: str) -> None:
    """Raise ForeignModel unless ``artifact_uri`` is served by the tracking server at ``tracking_uri``.

    ``mlflow-artifacts:/path`` means the tracking server's own store;
    ``mlflow-artifacts://host:port/path`` is accepted only when it names that server.
    """
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        raise ForeignModel(
            f"artifact URI {artifact_uri!r} is not served by the tracking server; models are "
            "loaded only through this platform's MLflow (mlflow server --serve-artifacts)")
    if parts.netloc and parts.netloc != urlsplit(tracking_uri).netloc:
        raise ForeignModel(
            f"artifact URI {artifact_uri!r} names the host {parts.netloc!r}; models are "
            f"loaded only from this platform's MLflow ({tracking_uri})")
