"""The status codes an operation can answer, each with the error body: one table for every route.

Every `/v1` operation reads an optional API key and the database, so every one can answer 401
and 503; a route names what else it can answer. FastAPI's default 422 is never sent (request
validation errors are 400s with the error body), so it is not listed.
"""

from __future__ import annotations

from typing import Any

from core.models import ErrorResponse

DESCRIPTIONS = {
    400: "A field, query parameter or header has a value this server does not accept; `param` names it.",
    401: "The Authorization header names a t2v key that is unknown, revoked or malformed, or keys are "
         "required here and none was sent.",
    404: "No such object for this caller (another tenant's objects are not found either), its files "
         "expired, or a list's `after` cursor names no item of that list.",
    409: "The object's state does not allow it: its content is not ready yet, or the Idempotency-Key was "
         "used with another body.",
    413: "The body is larger than this server accepts.",
    415: "The body's media type is not one this operation reads.",
    416: "The Range lies outside the file; Content-Range says its size.",
    429: "A tenant limit (submissions per minute, videos waiting); Retry-After says when to try again.",
    503: "The database is unavailable or overloaded; Retry-After says when to retry.",
}
ALWAYS = (401, 503)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these codes and the ones every operation can answer."""
    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]}
            for code in sorted({*codes, *ALWAYS})}
