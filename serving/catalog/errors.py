"""The catalog's error answers: ``{"error": code, "message": text, ...}`` with a 4xx/5xx."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than success; ``extra`` keys go into the JSON body (e.g. ``asset``)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def not_found(ref: str, what: str = "asset") -> ApiError:
    # Same answer for "absent" and "not yours to see": existence is never revealed.
    return ApiError(404, "not_found", f"no {what} {ref} (or it is not visible to you)",
                    **{what: ref})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def invalid(field: str, message: str, **extra: Any) -> ApiError:
    return ApiError(422, "invalid", f"{field}: {message}", field=field, **extra)
