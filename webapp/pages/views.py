"""Routes of the web page: `/` (full page, or the video list alone for htmx), and `/ui/...` fragments.

Every fragment is rendered from the API's public objects (presenters), never from table rows. A row
or batch card that is not terminal polls itself; the terminal markup has no trigger, so polling stops.
User errors come back as 200 with HX-Retarget (htmx does not swap 4xx and logs them as console errors).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from core import actions, crud, presenters, queries
from webapp.api.queue import QueuePublic, queue_state
from core.catalog import available_models
from webapp.csvfile import read_rows, validate_rows
from webapp.deps import Caller, CallerDep, SessionDep, SettingsDep, StoreDep, TokensDep
from webapp.deps import current_caller as resolve_caller
from core.errors import APIError, InvalidCSV, NotFound
from core.models import Batch, Video, VideoPublic
from webapp.pages.htmx import HTMX_CDN_URL, HTMX_LOCAL_URL, HTMX_SRI, HTMX_VERSION
from core.params import FIELDS, parse_video
from jobcontract import video as params
from jobimage.models import spec_for
from core.settings import Settings
from core.status import VideoStatus
from webapp.submit import batch_videos, body_hash, submit_batch, submit_video

WEBAPP = Path(__file__).resolve().parents[1]
STATIC = WEBAPP / "static"
PAGE_SIZE = 20
# Queued rows change rarely; running rows show denoising progress, so they poll faster.
POLL_QUEUED = "3s"
POLL_RUNNING = "1s"
POLL_BATCH = "2s"
POLL_QUEUE = "2s"
# Completed videos whose run time calibrates the "starts in about" estimate.
RUNTIME_SAMPLE = 20

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(WEBAPP / "templates"))


def _ago(ts: int | float | None) -> str:
    if ts is None:
        return ""
    s = max(0, int(time.time() - ts))
    if s < 45:
        return "just now"
    if s < 3600:
        return f"{round(s / 60) or 1} min ago"
    if s < 86400:
        return f"{round(s / 3600)} h ago"
    return f"{round(s / 86400)} d ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, int(math.ceil(seconds)))
    if s < 120:
        return f"{s} s"
    if s < 5400:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"


_asset_versions: dict[str, str] = {}


def _static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`, so a deploy never serves a stale stylesheet or script."""
    if name not in _asset_versions:
        path = STATIC / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else "0"
        _asset_versions[name] = digest
    return f"/static/{name}?v={_asset_versions[name]}"


templates.env.filters["ago"] = _ago
templates.env.filters["duration"] = _duration
templates.env.globals["static_url"] = _static_url


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _slots(queue: QueuePublic) -> int:
    return queue.slots.total or max(1, queue.slots.in_use)


def _starts_in(video: VideoPublic, queue: QueuePublic, runtimes: dict[str, float]) -> float | None:
    """Rough wait before a queued video starts: whole rounds of the runner slots ahead of it, each as long
    as recent videos of its model took here (the cost model's guess until there are any)."""
    if video.status != VideoStatus.queued or not video.queue_position:
        return None
    slots = _slots(queue)
    busy = queue.slots.in_use >= slots
    rounds = (video.queue_position - 1) // slots + (1 if busy else 0)
    return rounds * runtimes.get(video.model, video.estimated_gpu_seconds)


def _row_context(videos: list[VideoPublic], queue: QueuePublic, runtimes: dict[str, float] | None = None
                 ) -> dict[str, Any]:
    runtimes = runtimes or {}
    return {"videos": videos, "starts_in": {v.id: _starts_in(v, queue, runtimes) for v in videos},
            "poll": {"queued": POLL_QUEUED, "in_progress": POLL_RUNNING}}


def _runtimes(session: Session, videos: list[VideoPublic]) -> dict[str, float]:
    """Mean run time of the last completed videos per model, for the models of queued `videos`."""
    models = {v.model for v in videos if v.status == VideoStatus.queued}
    out = {}
    for model in models:
        rows = session.exec(select(Video.started_at, Video.completed_at).where(
            Video.model == model, Video.status == VideoStatus.completed.value,
            col(Video.started_at).is_not(None)).order_by(col(Video.seq).desc()).limit(RUNTIME_SAMPLE)).all()
        spans = [done - start for start, done in rows if done and start and done >= start]
        if spans:
            out[model] = sum(spans) / len(spans)
    return out


def _queue(request: Request, session: Session, settings: Settings, caller: Caller) -> QueuePublic:
    return queue_state(session, request=request, settings=settings, tenant=caller.scope, limit=5)


def _list(session: Session, caller: Caller, *, status: str, batch_id: str, after: str | None
          ) -> tuple[list[VideoPublic], bool, dict[str, str]]:
    filters, chosen = [], {}
    if status in VideoStatus.__members__:
        filters.append(col(Video.status) == status)
        chosen["status"] = status
    if batch_id.startswith("batch_") and len(batch_id) <= 64:
        filters.append(col(Video.batch_id) == batch_id)
        chosen["batch_id"] = batch_id
    try:
        rows, more = queries.page(session, Video, tenant=caller.scope, after=after or None, limit=PAGE_SIZE,
                               order="desc", filters=filters)
    except APIError:  # a stale cursor (deleted video): start from the top instead of failing the page
        rows, more = queries.page(session, Video, tenant=caller.scope, after=None, limit=PAGE_SIZE, order="desc",
                               filters=filters)
    return presenters.videos_public(session, rows), more, chosen


def _list_context(request: Request, session: Session, settings: Settings, caller: Caller, *, status: str,
                  batch_id: str, after: str | None) -> dict[str, Any]:
    videos, more, chosen = _list(session, caller, status=status, batch_id=batch_id, after=after)
    queue = _queue(request, session, settings, caller)
    return {**_row_context(videos, queue, _runtimes(session, videos)), "has_more": more, "filters": chosen,
            "after": after,
            "next_after": videos[-1].id if videos and more else None, "queue": queue}


def _page_context(request: Request, settings: Settings) -> dict[str, Any]:
    spec = spec_for(settings.model)  # the form's hints; a blank field takes the chosen model's default
    return dict(
        models=available_models(settings), default_model=settings.model,
        defaults=spec.defaults, frames=spec.valid_frames, sizes=spec.sizes,
        frame_hint=f"{spec.temporal_factor}k+1, {spec.fps} fps", max_prompt_chars=params.MAX_PROMPT_CHARS,
        min_steps=params.MIN_STEPS, max_steps=params.MAX_STEPS, max_guidance=params.MAX_GUIDANCE,
        max_seed=params.MAX_SEED, statuses=[s.value for s in VideoStatus],
        poll_batch=POLL_BATCH, poll_queue=POLL_QUEUE,
        htmx={"local": settings.htmx_source == "local", "cdn": HTMX_CDN_URL, "sri": HTMX_SRI,
              "local_url": HTMX_LOCAL_URL, "version": HTMX_VERSION},
    )


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep, settings: SettingsDep,
          status: str = "", batch_id: str = "", after: str = "") -> Response:
    """The page; for htmx requests aimed at the list (filters), just the list.

    A browser navigation carries no Authorization header, so where API keys are required the page comes
    as a shell whose panels load themselves over htmx, which adds the key from the key field.
    """
    try:
        caller = resolve_caller(request)
    except APIError as e:
        if e.status_code != 401 or _is_htmx(request):
            raise
        caller = None
    if caller is None:
        chosen = {k: v for k, v in (("status", status), ("batch_id", batch_id)) if v}
        ctx = {**_page_context(request, settings), "needs_key": True, "videos": [], "filters": chosen,
               "after": after or None, "batches": [], "filter_batches": [(batch_id, batch_id)] if batch_id else [],
               "list_query": "&".join(f"{k}={v}" for k, v in {**chosen, "after": after}.items() if v)}
        response = templates.TemplateResponse(request, "index.html", ctx)
        response.headers["Vary"] = "HX-Request, HX-Target, Authorization"
        return response
    ctx = _list_context(request, session, settings, caller, status=status, batch_id=batch_id, after=after or None)
    if _is_htmx(request) and request.headers.get("HX-Target") == "video-list":
        response = templates.TemplateResponse(request, "partials/video_list.html", ctx)
    else:
        batches, _ = queries.page(session, Batch, tenant=caller.scope, after=None, limit=8, order="desc")
        ctx.update(_page_context(request, settings), batches=presenters.batches_public(session, batches),
                   filter_batches=_filter_batches(session, caller, ctx["filters"].get("batch_id")))
        response = templates.TemplateResponse(request, "index.html", ctx)
    response.headers["Vary"] = "HX-Request, HX-Target, Authorization"
    return response


@router.get("/ui/batches", response_class=HTMLResponse)
def batch_list(request: Request, session: SessionDep, caller: CallerDep) -> Response:
    """The recent batches panel's content."""
    batches, _ = queries.page(session, Batch, tenant=caller.scope, after=None, limit=8, order="desc")
    return templates.TemplateResponse(request, "partials/batch_list.html",
                                      {"batches": presenters.batches_public(session, batches),
                                       "poll_batch": POLL_BATCH})


def _filter_batches(session: Session, caller: Caller, current: str | None) -> list[tuple[str, str]]:
    rows, _ = queries.page(session, Batch, tenant=caller.scope, after=None, limit=20, order="desc")
    options = [(b.id, f"{b.name or b.id} ({b.total})") for b in rows]
    if current and current not in {b for b, _ in options}:
        options.append((current, current))
    return options


@router.get("/ui/videos", response_class=HTMLResponse)
def video_rows(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
               status: str = "", batch_id: str = "", after: str = "") -> Response:
    """The next page of rows and a new 'load more' control (replaces the old one)."""
    ctx = _list_context(request, session, settings, caller, status=status, batch_id=batch_id, after=after or None)
    return templates.TemplateResponse(request, "partials/video_page.html", ctx)


def _row(request: Request, session: Session, settings: Settings, caller: Caller, video: Video,
         **extra: Any) -> Response:
    public = presenters.videos_public(session, [video])
    ctx = _row_context(public, _queue(request, session, settings, caller), _runtimes(session, public))
    return templates.TemplateResponse(request, "partials/video_rows.html", {**ctx, **extra})


def _find(session: Session, caller: Caller, video_id: str) -> Video | None:
    try:
        return queries.get_video(session, video_id=video_id, tenant=caller.scope)
    except NotFound:
        return None


@router.get("/ui/videos/{video_id}", response_class=HTMLResponse)
def video_row(request: Request, video_id: str, session: SessionDep, settings: SettingsDep,
              caller: CallerDep) -> Response:
    """One row; it polls itself until the video is terminal. A deleted video's row goes away (empty 200)."""
    video = _find(session, caller, video_id)
    if video is None:
        return HTMLResponse("")
    return _row(request, session, settings, caller, video)


@router.post("/ui/videos", response_class=HTMLResponse)
async def create_video(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
                       tokens: TokensDep) -> Response:
    """The form post: the new row goes on top of the list; a bad field comes back as a message by the form."""
    form = await request.form()
    raw = {k: v for k, v in form.items() if isinstance(v, str) and v.strip() != ""}
    try:
        spec, seed_given = parse_video(raw, default_model=settings.model, models=available_models(settings),
                                       tokens=tokens)
    except APIError as e:
        return _form_error(request, "#form-error", e.message, e.param)

    def write() -> Video:
        return submit_video(session, spec=spec, seed_given=seed_given, tenant=caller.tenant, settings=settings,
                            idempotency_key=None)[0]

    video = await run_in_threadpool(write)
    if not _is_htmx(request):
        return RedirectResponse("/", status_code=303)
    return _row(request, session, settings, caller, video, clear_form_error=True)


def _form_error(request: Request, target: str, message: str, param: str | None) -> Response:
    response = templates.TemplateResponse(request, "partials/form_error.html", {"message": message, "param": param})
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = "innerHTML"
    return response


def rerun_request(video: Video) -> dict[str, Any]:
    """The request that makes `video` again: its stored parameters as a request spells them."""
    raw = {f: getattr(video, f) for f in FIELDS if f not in ("seconds", "size", "metadata")}
    return {**raw, "size": f"{video.width}x{video.height}", "metadata": dict(video.metadata_json or {})}


@router.post("/ui/videos/{video_id}/rerun", response_class=HTMLResponse)
def rerun_video(request: Request, video_id: str, session: SessionDep, settings: SettingsDep,
                caller: CallerDep, tokens: TokensDep) -> Response:
    """A new video with the same prompt, seed and settings."""
    old = _find(session, caller, video_id)
    if old is None:
        return HTMLResponse("")
    raw = rerun_request(old)
    try:
        spec, _ = parse_video(raw, default_model=settings.model, models=available_models(settings), strict=True,
                              tokens=tokens)
    except APIError as e:  # e.g. its model is no longer available here
        return _form_error(request, "#form-error", e.message, e.param)
    video, _ = submit_video(session, spec=spec, seed_given=True, tenant=caller.tenant, settings=settings,
                            idempotency_key=None)
    return _row(request, session, settings, caller, video, clear_form_error=True)


@router.post("/ui/videos/{video_id}/cancel", response_class=HTMLResponse)
def cancel_video(request: Request, video_id: str, session: SessionDep, settings: SettingsDep,
                 caller: CallerDep) -> Response:
    """Cancel if still active; answers with the row as it is now."""
    video = _find(session, caller, video_id)
    if video is None:
        return HTMLResponse("")
    if VideoStatus(video.status).is_active():
        crud.transition(session, video=video, to=VideoStatus.cancelled, reason="cancelled by user")
        session.commit()
    return _row(request, session, settings, caller, video)


@router.delete("/ui/videos/{video_id}", response_class=HTMLResponse)
def delete_video(video_id: str, session: SessionDep, store: StoreDep, caller: CallerDep) -> Response:
    """Cancel if needed, delete row and files; the empty answer removes the row."""
    video = _find(session, caller, video_id)
    if video is not None:
        actions.delete_video(session, store, video)
    return HTMLResponse("")


@router.post("/ui/batches", response_class=HTMLResponse)
async def create_batch(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
                       tokens: TokensDep, file: Annotated[UploadFile | None, Form()] = None) -> Response:
    """CSV upload: every bad row listed and nothing queued, or the batch card and its first rows."""
    if file is None or not file.filename:
        return templates.TemplateResponse(request, "partials/csv_result.html",
                                          {"message": "Choose a CSV file first.", "rows": []})
    data = await file.read(settings.max_upload_bytes + 1)
    try:
        if len(data) > settings.max_upload_bytes:
            raise APIError(f"the file is over the limit of {settings.max_upload_bytes} bytes", param="file")
        specs = validate_rows(read_rows(data), default_model=settings.model, models=available_models(settings),
                              max_rows=settings.max_batch_rows, tokens=tokens)
    except InvalidCSV as e:
        return templates.TemplateResponse(request, "partials/csv_result.html",
                                          {"message": e.message, "rows": e.rows, "filename": file.filename})
    except APIError as e:
        return templates.TemplateResponse(request, "partials/csv_result.html",
                                          {"message": e.message, "rows": [], "filename": file.filename})

    def write() -> Batch:
        return submit_batch(session, specs=specs, tenant=caller.tenant, settings=settings,
                            name=file.filename[:256], metadata={}, idempotency_key=None,
                            digest=body_hash(data.decode("utf-8", "replace")))[0]

    batch = await run_in_threadpool(write)
    if not _is_htmx(request):
        return RedirectResponse(f"/?batch_id={batch.id}", status_code=303)
    first = list(reversed(batch_videos(session, batch_id=batch.id)[:PAGE_SIZE]))
    queue = _queue(request, session, settings, caller)
    public = presenters.videos_public(session, first)
    ctx = {**_row_context(public, queue, _runtimes(session, public)),
           "batch": presenters.batches_public(session, [batch])[0], "poll_batch": POLL_BATCH,
           "message": f"Queued {batch.total} video{'s' if batch.total != 1 else ''} from {file.filename}.",
           "rows": [], "queued": True}
    response = templates.TemplateResponse(request, "partials/csv_result.html", ctx)
    response.headers["HX-Trigger"] = "t2v-batch-queued"
    return response


def _batch(request: Request, session: Session, caller: Caller, batch_id: str) -> Response:
    try:
        batch = queries.get_batch(session, batch_id=batch_id, tenant=caller.scope)
    except NotFound:
        return HTMLResponse("")
    return templates.TemplateResponse(request, "partials/batch_card.html",
                                      {"batch": presenters.batches_public(session, [batch])[0],
                                       "poll_batch": POLL_BATCH})


@router.get("/ui/batches/{batch_id}", response_class=HTMLResponse)
def batch_card(request: Request, batch_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """A batch's card with counts and progress; polls while the batch is active."""
    return _batch(request, session, caller, batch_id)


@router.post("/ui/batches/{batch_id}/cancel", response_class=HTMLResponse)
def cancel_batch(request: Request, batch_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Cancel every unfinished video of the batch."""
    try:
        batch = queries.get_batch(session, batch_id=batch_id, tenant=caller.scope)
    except NotFound:
        return HTMLResponse("")
    actions.cancel_batch(session, batch)
    return _batch(request, session, caller, batch_id)


@router.get("/ui/queue", response_class=HTMLResponse)
def queue_panel(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep) -> Response:
    """The queue panel (polls itself)."""
    return templates.TemplateResponse(request, "partials/queue_panel.html",
                                      {"queue": _queue(request, session, settings, caller), "poll_queue": POLL_QUEUE})


@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """Our CSS/JS and the vendored htmx; nothing outside webapp/static."""
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        raise NotFound(f"no static file {path!r}", param="path")
    media = {".css": "text/css", ".js": "text/javascript"}.get(target.suffix)
    return FileResponse(target, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
