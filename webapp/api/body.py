"""Request bodies that may come as JSON or as form fields."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from core.errors import InvalidParam, TooLarge, UnsupportedMediaType


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {declared} bytes; the limit is {limit}", param="body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body is over the limit of {limit} bytes", param="body")
    return bytes(body)


async def json_or_form(request: Request, limit: int) -> tuple[dict[str, Any], bool]:
    """A JSON object body, or urlencoded/multipart form fields, as a dict; and whether it was JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        raw = await read_limited(request, limit)
        try:
            data = json.loads(raw or b"null")
        except ValueError as e:
            raise InvalidParam(f"request body is not valid JSON: {e}", param="body") from e
        if not isinstance(data, dict):
            raise InvalidParam(f"request body must be a JSON object, got {type(data).__name__}", param="body")
        return data, True
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"request body is {declared} bytes; the limit is {limit}", param="body")
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}, False
    raise UnsupportedMediaType(
        f"content type {ctype!r} is not supported; send application/json or form fields", param="Content-Type")


async def check_webhook(request: Request, url: str | None) -> str | None:
    """The app's webhook policy on a URL whose syntax passed: may resolve its host, so off the event loop."""
    if url is None:
        return None
    return await run_in_threadpool(request.app.state.webhook_policy.check, url)
