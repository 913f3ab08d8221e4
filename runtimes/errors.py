"""Errors that carry the HTTP status the REST layer answers with."""

from __future__ import annotations


class ApiError(Exception):
    """A request-level failure, answered as ``{"error": message}`` with ``status``."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    """The caller sent something the model cannot take (TF-Serving's INVALID_ARGUMENT)."""

    status = 400


class NotFound(ApiError):
    """Unknown model, version or route (TF-Serving's NOT_FOUND)."""

    status = 404


class Unavailable(ApiError):
    """The model is still loading or warming up."""

    status = 503


class ModelLoadError(Exception):
    """The model folder cannot be served; the server exits non-zero with this message."""
