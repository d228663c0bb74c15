"""`/v1/batches`: many prompts at once, from a CSV upload or a JSON list."""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool


from webapp import crud, presenters
from webapp.api.body import read_limited
from webapp.catalog import available_models
from webapp.csvfile import read_rows, validate_rows
from webapp.deps import CallerDep, SessionDep, SettingsDep
from webapp.errors import InvalidParam, NotFound, TooLarge, UnsupportedMediaType
from webapp.models import Batch, BatchList, BatchPublic, ErrorResponse
from webapp.params import parse_metadata
from webapp.status import VideoStatus
from webapp.submit import body_hash, submit_batch

router = APIRouter(prefix="/v1/batches", tags=["batches"])
ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 409: {"model": ErrorResponse},
          413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}}
BATCH_SCHEMA = {
    "type": "object", "required": ["videos"],
    "properties": {
        "videos": {"type": "array", "items": {"type": "object"}, "description": "Video create requests."},
        "name": {"type": "string", "maxLength": 256},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
CSV_SCHEMA = {"type": "object", "required": ["file"], "properties": {
    "file": {"type": "string", "format": "binary", "description": "CSV with a header row; 'prompt' required."},
    "name": {"type": "string"}}}


def check_id(batch_id: str) -> str:
    if not re.fullmatch(r"^batch_[0-9a-z]{1,40}$", batch_id):
        raise NotFound(f"no batch with id {batch_id!r}", param="batch_id")
    return batch_id


async def _parse(request: Request, limit: int) -> tuple[list[dict[str, Any]], str, dict[str, str], str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"upload is {declared} bytes; the limit is {limit}", param="file")
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidParam("multipart upload needs a 'file' field with the CSV", param="file")
        data = await upload.read()
        if len(data) > limit:
            raise TooLarge(f"CSV is {len(data)} bytes; the limit is {limit}", param="file")
        name = str(form.get("name") or upload.filename or "")[:256]
        return read_rows(data), name, {}, body_hash(data.decode("utf-8", "replace"))
    if ctype in ("text/csv", "application/csv"):
        data = await read_limited(request, limit)
        return read_rows(data), "", {}, body_hash(data.decode("utf-8", "replace"))
    if ctype in ("application/json", ""):
        raw = await read_limited(request, limit)
        try:
            body = json.loads(raw or b"null")
        except ValueError as e:
            raise InvalidParam(f"request body is not valid JSON: {e}", param="body") from e
        if not isinstance(body, dict) or not isinstance(body.get("videos"), list):
            raise InvalidParam("JSON body must be an object with a 'videos' list", param="videos")
        if not all(isinstance(v, dict) for v in body["videos"]):
            raise InvalidParam("every item of 'videos' must be an object", param="videos")
        name = body.get("name") or ""
        if not isinstance(name, str) or len(name) > 256:
            raise InvalidParam("name must be text of at most 256 characters", param="name")
        return body["videos"], name, parse_metadata(body.get("metadata")), body_hash(body)
    raise UnsupportedMediaType(f"content type {ctype!r} is not supported; upload a CSV as multipart/form-data "
                               "(field 'file'), text/csv, or send JSON", param="Content-Type")


@router.post("", response_model=BatchPublic, responses=ERRORS, summary="Create a batch",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": BATCH_SCHEMA}, "multipart/form-data": {"schema": CSV_SCHEMA},
                 "text/csv": {"schema": {"type": "string"}}}}})
async def create_batch(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
                       idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                       ) -> BatchPublic:
    """Validate every row first; a bad row rejects the whole batch with all bad rows listed."""
    rows, name, metadata, digest = await _parse(request, settings.max_upload_bytes)
    specs = validate_rows(rows, default_model=settings.model, models=available_models(settings),
                          max_rows=settings.max_batch_rows)

    def write() -> BatchPublic:
        batch, _ = submit_batch(session, specs=specs, tenant=caller.tenant, settings=settings, name=name,
                                metadata=metadata, idempotency_key=idempotency_key, digest=digest)
        return presenters.batches_public(session, [batch])[0]

    # Blocking DB work stays off the event loop (SQLite may wait for its write lock).
    return await run_in_threadpool(write)


@router.get("", response_model=BatchList, responses=ERRORS, summary="List batches")
def list_batches(session: SessionDep, caller: CallerDep,
                 after: Annotated[str | None, Query(max_length=64)] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 order: Literal["asc", "desc"] = "desc") -> BatchList:
    """A page of batches, newest first by default."""
    rows, more = crud.page(session, Batch, tenant=caller.scope, after=after, limit=limit, order=order)
    data = presenters.batches_public(session, rows)
    return BatchList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                     has_more=more)


@router.get("/{batch_id}", response_model=BatchPublic, responses=ERRORS, summary="Retrieve a batch")
def get_batch(batch_id: str, session: SessionDep, caller: CallerDep) -> BatchPublic:
    """A batch with its counts per status."""
    batch = crud.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    return presenters.batches_public(session, [batch])[0]


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=ERRORS, summary="Cancel a batch")
def cancel_batch(batch_id: str, session: SessionDep, caller: CallerDep) -> BatchPublic:
    """Cancel every video of the batch that has not finished; finished ones stay."""
    batch = crud.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    if batch.cancelled_at is None:
        batch.cancelled_at = time.time()
        session.add(batch)
    for video in crud.active_videos(session, batch_id=batch.id):
        crud.transition(session, video=video, to=VideoStatus.cancelled, reason="batch cancelled by user")
    session.commit()
    return presenters.batches_public(session, [batch])[0]
