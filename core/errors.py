"""Errors of the web app, each mapped to an HTTP status and the OpenAI error body."""

from __future__ import annotations


class APIError(Exception):
    """An error that reaches a client as `{"error": {message, type, param, code}}`."""

    status_code = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if code:
            self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidParam(APIError):
    """A field has a value we cannot accept; the message names both."""

    code = "invalid_value"


class InvalidCSV(APIError):
    """A CSV upload has bad rows; `rows` lists every one with its reason."""

    code = "invalid_csv"

    def __init__(self, message: str, rows: list[dict]) -> None:
        super().__init__(message, param="file")
        self.rows = rows

    def body(self) -> dict:
        body = super().body()
        body["error"]["rows"] = self.rows
        return body


class NotFound(APIError):
    status_code = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(APIError):
    status_code = 409
    type = "conflict_error"
    code = "conflict"


class TooLarge(APIError):
    status_code = 413
    type = "invalid_request_error"
    code = "too_large"


class UnsupportedMediaType(APIError):
    status_code = 415
    code = "unsupported_media_type"


class RangeNotSatisfiable(APIError):
    status_code = 416
    code = "range_not_satisfiable"


class TooManyRequests(APIError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limited"
