"""`/v1/videos`: the OpenAI Videos API shape, plus cancel, events, filters and queue position."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from sqlmodel import col

from jobcontract.errors import ObjectNotFound
from jobcontract.records import video_keys
from core import actions, crud, presenters, queries, webhook_targets
from webapp.api.body import check_webhook, json_or_form
from core.catalog import KNOWN_MODELS, available_models
from webapp.deps import CallerDep, SessionDep, SettingsDep, StoreDep, TokensDep
from core.errors import Conflict, NotFound, RangeNotSatisfiable
from webapp.api.responses import errors
from core.models import Video, VideoDeleted, VideoList, VideoPublic
from core.outbox import deliveries, delivery_public
from core.params import parse_video, video_json_schema
from core.status import VideoStatus
from webapp.submit import submit_video

router = APIRouter(prefix="/v1/videos", tags=["videos"])

ID_PATTERN = r"^video_[0-9a-z]{1,40}$"
CREATE_SCHEMA = video_json_schema(models=KNOWN_MODELS, extra={"webhook_url": webhook_targets.JSON_SCHEMA})
FORM_SCHEMA = video_json_schema(models=KNOWN_MODELS, form=True, extra={"webhook_url": webhook_targets.FORM_SCHEMA})


def check_id(video_id: str) -> str:
    """Refuse malformed ids early (404: there is no such video)."""
    if not re.fullmatch(ID_PATTERN, video_id):
        raise NotFound(f"no video with id {video_id!r}", param="video_id")
    return video_id


@router.post("", response_model=VideoPublic, responses=errors(400, 409, 413, 415, 429), summary="Create a video",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": CREATE_SCHEMA},
                 "application/x-www-form-urlencoded": {"schema": FORM_SCHEMA},
                 "multipart/form-data": {"schema": FORM_SCHEMA}}}})
async def create_video(request: Request, response: Response, session: SessionDep, settings: SettingsDep,
                       caller: CallerDep, tokens: TokensDep,
                       idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> VideoPublic:
    """Queue a video; returns at once with status `queued`."""
    raw, is_json = await json_or_form(request, settings.max_upload_bytes)
    webhook_url = webhook_targets.check_syntax(raw.pop("webhook_url", None))
    spec, seed_given = parse_video(raw, default_model=settings.model, models=available_models(settings),
                                   strict=is_json, tokens=tokens)
    webhook_url = await check_webhook(request, webhook_url)

    def write() -> tuple[VideoPublic, bool]:
        video, created = submit_video(session, spec=spec, seed_given=seed_given, tenant=caller.tenant,
                                      settings=settings, idempotency_key=idempotency_key, webhook_url=webhook_url)
        return presenters.videos_public(session, [video])[0], created

    # Blocking DB work stays off the event loop (SQLite may wait for its write lock).
    public, created = await run_in_threadpool(write)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return public


@router.get("", response_model=VideoList, responses=errors(400, 404), summary="List videos")
def list_videos(session: SessionDep, caller: CallerDep,
                after: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 20,
                order: Literal["asc", "desc"] = "desc",
                status: VideoStatus | None = None,
                batch_id: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """A page of videos, newest first by default; `after` is the last id of the previous page."""
    filters = []
    if status is not None:
        filters.append(col(Video.status) == status.value)
    if batch_id is not None:
        filters.append(col(Video.batch_id) == batch_id)
    rows, more = queries.page(session, Video, tenant=caller.scope, after=after, limit=limit, order=order,
                           filters=filters)
    data = presenters.videos_public(session, rows)
    return presenters.json_response(VideoList(data=data, first_id=data[0].id if data else None,
                                              last_id=data[-1].id if data else None, has_more=more))


@router.get("/{video_id}", response_model=VideoPublic, responses=errors(404), summary="Retrieve a video")
def get_video(video_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """One video's status and details."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    return presenters.json_response(presenters.videos_public(session, [video])[0])


@router.get("/{video_id}/events", responses=errors(404), summary="Status history of a video")
def get_events(video_id: str, session: SessionDep, caller: CallerDep) -> dict:
    """The append-only status log: every change with its time and reason."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    return {"object": "list", "data": [
        {"at": int(e.at), "from": e.from_status, "to": e.to_status, "reason": e.reason}
        for e in queries.events(session, video_id=video.id)]}


@router.get("/{video_id}/webhooks", responses=errors(404), summary="Webhook deliveries of a video")
def get_webhooks(video_id: str, session: SessionDep, caller: CallerDep) -> dict:
    """Every webhook message for this video with its delivery attempts."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    return {"object": "list", "data": [delivery_public(d) for d in deliveries(session, object_id=video.id)]}


@router.post("/{video_id}/cancel", response_model=VideoPublic, responses=errors(404, 409), summary="Cancel a video")
def cancel_video(video_id: str, session: SessionDep, caller: CallerDep) -> VideoPublic:
    """Stop a queued or running video; the runner/controller stops its job."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    if not VideoStatus(video.status).is_terminal():
        # Refused if the controller finished it meanwhile: `video` is then as the database has it.
        crud.transition(session, video=video, to=VideoStatus.cancelled, reason="cancelled by user")
        session.commit()
    if video.status != VideoStatus.cancelled:
        raise Conflict(f"video {video.id} is already {video.status}; only queued or in_progress videos can be "
                       "cancelled", param="video_id", code="not_cancellable")
    return presenters.videos_public(session, [video])[0]


@router.delete("/{video_id}", response_model=VideoDeleted, responses=errors(404), summary="Delete a video")
def delete_video(video_id: str, session: SessionDep, store: StoreDep, caller: CallerDep) -> VideoDeleted:
    """Cancel if needed, then remove the row, its events and its files."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    actions.delete_video(session, store, video)
    return VideoDeleted(id=video.id)


# One byte range (RFC 9110): `bytes=first-[last]` or `bytes=-suffix`. Any other Range is ignored and the
# whole file sent, as RFC 9110 allows (several ranges, other units, bad syntax).
RANGE = re.compile(r"bytes=([0-9]+-[0-9]*|-[0-9]+)")


@router.get("/{video_id}/content", responses={**errors(400, 404, 409, 416), 206: {"description": "Partial content"},
                                              302: {"description": "With S3 storage and redirects on (cluster "
                                                    "default): Location is a presigned storage URL, valid "
                                                    "T2V_PRESIGN_SECONDS, that serves the bytes and Range requests",
                                                    "headers": {"Location": {"schema": {"type": "string"}}}},
                                              200: {"content": {"video/mp4": {}, "image/jpeg": {}}}},
            summary="Download the MP4 or its thumbnail", response_class=Response)
def get_content(video_id: str, session: SessionDep, store: StoreDep, caller: CallerDep, settings: SettingsDep,
                variant: Literal["video", "thumbnail"] = "video",
                range_header: Annotated[str | None, Header(
                    alias="Range", description="One byte range: bytes=first-last, bytes=first- or bytes=-suffix; "
                                               "any other value is ignored and the whole file sent")] = None,
                ) -> Response:
    """Stream the finished video (HTTP Range supported) or its JPEG thumbnail."""
    video = queries.get_video(session, video_id=check_id(video_id), tenant=caller.scope)
    if video.status != VideoStatus.completed:
        raise Conflict(f"video {video.id} is {video.status}; its content exists once it is completed",
                       param="video_id", code="content_not_ready")
    if video.expired_at is not None:
        raise NotFound(f"video {video.id} expired at {int(video.expires_at or video.expired_at)} (Unix time) and "
                       "its files were deleted", param="video_id", code="content_expired")
    key = video_keys(video.id)[variant]
    media = "video/mp4" if variant == "video" else "image/jpeg"
    try:
        size = store.size(key)
    except ObjectNotFound as e:
        raise NotFound(f"the {variant} of video {video.id} is missing from storage (expired or deleted)",
                       param="variant", code="content_missing") from e
    disposition = f'inline; filename="{video.id}.{"mp4" if variant == "video" else "jpg"}"'
    if settings.redirects_downloads:
        url = store.presigned_url(key, expires=timedelta(seconds=settings.presign_seconds),
                                  public_url=settings.s3_public_url.rstrip("/") or None,
                                  response_headers={"response-content-type": media,
                                                    "response-content-disposition": disposition})
        if url:  # the bytes come from storage, Range requests included; this answer must not outlive the URL
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": disposition, "Cache-Control": "private, max-age=3600",
               "ETag": f'"{video.sha256 or video.id}-{variant}"'}
    start, end, status = 0, size - 1, 200
    if range_header and RANGE.fullmatch(range_header.strip()):
        first, _, last = range_header.strip().removeprefix("bytes=").partition("-")
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last)), size - 1
        if start > end or start >= size:
            raise RangeNotSatisfiable(f"Range {range_header!r} is outside the {size}-byte file", param="Range",
                                      headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(store.iter_range(key, start, end), status_code=status, media_type=media,
                             headers=headers)
