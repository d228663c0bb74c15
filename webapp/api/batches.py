"""`/v1/batches`: many prompts at once, from a CSV upload or a JSON list."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from jobcontract.errors import ObjectNotFound
from jobcontract.records import video_keys
from jobcontract.storage import ObjectStore
from core import actions, presenters, queries, webhook_targets
from webapp.api.body import check_webhook, read_limited
from core.catalog import KNOWN_MODELS, available_models
from webapp.csvfile import CSV_SCHEMA, read_rows, validate_rows
from webapp.deps import CallerDep, SessionDep, SettingsDep, StoreDep, TokensDep
from core.errors import Conflict, InvalidParam, NotFound, TooLarge, UnsupportedMediaType
from webapp.api.responses import errors
from core.models import Batch, BatchList, BatchPublic
from core.outbox import deliveries, delivery_public
from core.params import METADATA_SCHEMA, parse_metadata, video_json_schema
from core.status import VideoStatus
from webapp.submit import batch_videos, body_hash, submit_batch

log = logging.getLogger("t2v.webapp")

router = APIRouter(prefix="/v1/batches", tags=["batches"])
BATCH_SCHEMA = {
    "type": "object", "required": ["videos"],
    "properties": {
        "videos": {"type": "array", "minItems": 1, "items": video_json_schema(models=KNOWN_MODELS),
                   "description": "Video create requests (fields as POST /v1/videos)."},
        "name": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"}]},
        "metadata": {"anyOf": [METADATA_SCHEMA, {"type": "null"}]},
        "webhook_url": webhook_targets.JSON_SCHEMA,
    },
}
UPLOAD_SCHEMA = {"type": "object", "required": ["file"], "additionalProperties": False, "properties": {
    "file": CSV_SCHEMA, "name": {"type": "string", "maxLength": 256}, "webhook_url": webhook_targets.FORM_SCHEMA}}


def check_id(batch_id: str) -> str:
    if not re.fullmatch(r"^batch_[0-9a-z]{1,40}$", batch_id):
        raise NotFound(f"no batch with id {batch_id!r}", param="batch_id")
    return batch_id


async def _parse(request: Request, limit: int) -> tuple[list[dict[str, Any]], str, dict[str, str], str, str | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"upload is {declared} bytes; the limit is {limit}", param="file")
        form = await request.form()
        if unknown := sorted(set(form) - set(UPLOAD_SCHEMA["properties"])):
            raise InvalidParam(f"unknown field {unknown[0]!r}; a CSV upload has the fields file, name, webhook_url",
                               param=unknown[0])
        upload = form.get("file")
        if upload is None:
            raise InvalidParam("multipart upload needs a 'file' field with the CSV", param="file")
        data = upload.encode() if isinstance(upload, str) else await upload.read()  # a file, or the CSV as text
        if len(data) > limit:
            raise TooLarge(f"CSV is {len(data)} bytes; the limit is {limit}", param="file")
        name = form.get("name") if isinstance(form.get("name"), str) else ""
        name = name or ("" if isinstance(upload, str) else upload.filename or "")
        if len(name) > 256:
            raise InvalidParam(f"name has {len(name)} characters; the limit is 256", param="name")
        hook = webhook_targets.check_syntax(form.get("webhook_url"))
        return read_rows(data), name, {}, body_hash([data.decode("utf-8", "replace"), hook]), hook
    if ctype in ("text/csv", "application/csv"):
        data = await read_limited(request, limit)
        return read_rows(data), "", {}, body_hash(data.decode("utf-8", "replace")), None
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
        name = "" if body.get("name") is None else body["name"]
        if not isinstance(name, str) or len(name) > 256:
            raise InvalidParam("name must be text of at most 256 characters", param="name")
        return (body["videos"], name, parse_metadata(body.get("metadata")), body_hash(body),
                webhook_targets.check_syntax(body.get("webhook_url")))
    raise UnsupportedMediaType(f"content type {ctype!r} is not supported; upload a CSV as multipart/form-data "
                               "(field 'file'), text/csv, or send JSON", param="Content-Type")


@router.post("", response_model=BatchPublic, responses=errors(400, 409, 413, 415, 429), summary="Create a batch",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": BATCH_SCHEMA}, "multipart/form-data": {"schema": UPLOAD_SCHEMA},
                 "text/csv": {"schema": CSV_SCHEMA}}}})
async def create_batch(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
                       tokens: TokensDep, idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                       ) -> BatchPublic:
    """Validate every row first; a bad row rejects the whole batch with all bad rows listed."""
    rows, name, metadata, digest, webhook_url = await _parse(request, settings.max_upload_bytes)
    is_json = request.headers.get("content-type", "").split(";")[0].strip().lower() in ("application/json", "")
    specs = validate_rows(rows, default_model=settings.model, models=available_models(settings),
                          max_rows=settings.max_batch_rows, strict=is_json, tokens=tokens)
    webhook_url = await check_webhook(request, webhook_url)

    def write() -> BatchPublic:
        batch, _ = submit_batch(session, specs=specs, tenant=caller.tenant, settings=settings, name=name,
                                metadata=metadata, idempotency_key=idempotency_key, digest=digest,
                                webhook_url=webhook_url)
        return presenters.batches_public(session, [batch])[0]

    # Blocking DB work stays off the event loop (SQLite may wait for its write lock).
    return await run_in_threadpool(write)


@router.get("", response_model=BatchList, responses=errors(400, 404), summary="List batches")
def list_batches(session: SessionDep, caller: CallerDep,
                 after: Annotated[str | None, Query(max_length=64)] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 order: Literal["asc", "desc"] = "desc") -> BatchList:
    """A page of batches, newest first by default."""
    rows, more = queries.page(session, Batch, tenant=caller.scope, after=after, limit=limit, order=order)
    data = presenters.batches_public(session, rows)
    return BatchList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                     has_more=more)


@router.get("/{batch_id}", response_model=BatchPublic, responses=errors(404), summary="Retrieve a batch")
def get_batch(batch_id: str, session: SessionDep, caller: CallerDep) -> BatchPublic:
    """A batch with its counts per status."""
    batch = queries.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    return presenters.batches_public(session, [batch])[0]


@router.get("/{batch_id}/webhooks", responses=errors(404), summary="Webhook deliveries of a batch")
def get_webhooks(batch_id: str, session: SessionDep, caller: CallerDep) -> dict:
    """The batch's webhook message with its delivery attempts."""
    batch = queries.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    return {"object": "list", "data": [delivery_public(d) for d in deliveries(session, object_id=batch.id)]}


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=errors(404), summary="Cancel a batch")
def cancel_batch(batch_id: str, session: SessionDep, caller: CallerDep) -> BatchPublic:
    """Cancel every video of the batch that has not finished; finished ones stay."""
    batch = queries.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    actions.cancel_batch(session, batch)
    return presenters.batches_public(session, [batch])[0]


class _Sink:
    """A write-only stream that hands what zipfile wrote so far to the response, chunk by chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _zip_stream(store: ObjectStore, files: list[tuple[str, str, int]], index: str) -> Iterator[bytes]:
    """Stored (not deflated: MP4 is compressed already) zip, written as it is read from storage."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:  # type: ignore[arg-type]
        zf.writestr("index.csv", index)
        yield sink.drain()
        for name, key, size in files:
            info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
            info.file_size = size
            try:
                with zf.open(info, "w", force_zip64=size > 2**31) as out:
                    for chunk in store.iter_range(key, 0, size - 1):
                        out.write(chunk)
                        yield sink.drain()
            except ObjectNotFound:
                log.warning("video file vanished while zipping", extra={"key": key})
    yield sink.drain()


@router.get("/{batch_id}/content", responses={**errors(404, 409), 200: {"content": {"application/zip": {}}}},
            summary="Download the finished videos of a batch as a zip", response_class=Response)
def get_batch_content(batch_id: str, session: SessionDep, store: StoreDep, caller: CallerDep) -> Response:
    """A streamed zip of every completed video of the batch, with index.csv mapping rows to files."""
    batch = queries.get_batch(session, batch_id=check_id(batch_id), tenant=caller.scope)
    videos = [v for v in batch_videos(session, batch_id=batch.id) if v.status == VideoStatus.completed]
    if not videos:
        raise Conflict(f"batch {batch.id} has no completed videos yet", param="batch_id", code="content_not_ready")
    files, lines = [], io.StringIO()
    writer = csv.writer(lines)
    writer.writerow(["row", "file", "video_id", "seed", "prompt"])
    for v in videos:
        key = video_keys(v.id)["video"]
        try:
            size = store.size(key)
        except ObjectNotFound:
            continue  # expired or deleted: the index says which rows are missing
        name = f"{v.batch_row or 0:04d}_{v.id}.mp4"
        files.append((name, key, size))
        writer.writerow([v.batch_row, name, v.id, v.seed, v.prompt])
    return StreamingResponse(_zip_stream(store, files, lines.getvalue()), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{batch.id}.zip"'})
