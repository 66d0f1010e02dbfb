"""API errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

# OpenAI's error "type" for each status we send.
_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error",
    502: "upstream_error", 503: "server_overloaded", 504: "upstream_error",
}


class APIError(Exception):
    """Raised anywhere in serving; the app turns it into a JSON error response with ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response.

    >>> error_body(404, "no such model", "model_not_found")["error"]["type"]
    'not_found_error'
    """
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param, "code": code}}


def model_not_found(name: str) -> APIError:
    return APIError(404, f"The model `{name}` does not exist.", "model_not_found", "model")
