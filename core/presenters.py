"""Table rows -> API objects. Routes never return table objects."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel
from sqlmodel import Session

from core import queries
from core.models import PUBLIC_PARAMS, Batch, BatchCounts, BatchPublic, ErrorInfo, Video, VideoPublic
from core.costmodel import estimate, units_by_model
from core.params import seconds_label
from core.status import BatchStatus, VideoStatus
from jobimage.models import spec_for



def _ts(v: float | None) -> int | None:
    return None if v is None else int(v)


def video_public(video: Video, *, position: int | None = None, units: dict[str, float] | None = None
                 ) -> VideoPublic:
    """The API's video object; `units` is the calibrated cost model (core/costmodel.py)."""
    error = ErrorInfo(code=video.error_code, message=video.error_message or "") if video.error_code else None
    return VideoPublic(
        id=video.id, status=VideoStatus(video.status), progress=video.progress,
        **{f: getattr(video, f) for f in PUBLIC_PARAMS},
        seconds=seconds_label(video.num_frames, video.model), size=f"{video.width}x{video.height}",
        created_at=int(video.created_at), started_at=_ts(video.started_at), completed_at=_ts(video.completed_at),
        expires_at=_ts(video.expires_at), error=error, batch_id=video.batch_id,
        queue_position=position if video.status == VideoStatus.queued else None,
        queue=video.queue, priority=video.priority,
        estimated_gpu_seconds=estimate(units or {}, model=video.model, num_frames=video.num_frames,
                                       width=video.width, height=video.height, steps=video.num_inference_steps,
                                       guidance=video.guidance_scale),
        metadata=video.metadata_json or {}, bytes=video.bytes, sha256=video.sha256, timings=video.timings or {},
        notice=spec_for(video.model).notice,
    )


def videos_public(session: Session, videos: list[Video]) -> list[VideoPublic]:
    """Many video objects, with queue positions looked up together; `videos` may be ORM objects or
    table rows of `video` (`queries.page`)."""
    positions = queries.queue_positions(session, videos)
    units = units_by_model(session)
    return [video_public(v, position=positions.get(v.id), units=units) for v in videos]


def json_response(obj: BaseModel) -> Response:
    """`obj` as the JSON body, serialised once. Routes declare the model as their `response_model`
    (the OpenAPI schema); returning it as is made FastAPI validate the whole object again first, a
    tenth of a list call's CPU."""
    return Response(obj.model_dump_json(), media_type="application/json")


def batch_status(counts: BatchCounts, cancelled: bool) -> BatchStatus:
    """A batch's status from its counts."""
    active = counts.queued + counts.in_progress
    if active == 0:
        return BatchStatus.cancelled if cancelled and counts.completed < counts.total else BatchStatus.completed
    if counts.queued == active and counts.completed + counts.failed + counts.cancelled == 0:
        return BatchStatus.queued
    return BatchStatus.in_progress


def batches_public(session: Session, batches: list[Batch]) -> list[BatchPublic]:
    """Batch objects with their counts from one grouped query."""
    all_counts = queries.batch_counts(session, batch_ids=[b.id for b in batches])
    out = []
    for b in batches:
        counts = BatchCounts(total=b.total, **all_counts[b.id])
        done = counts.completed + counts.failed + counts.cancelled
        out.append(BatchPublic(
            id=b.id, status=batch_status(counts, b.cancelled_at is not None).value, name=b.name,
            created_at=int(b.created_at), cancelled_at=_ts(b.cancelled_at), counts=counts,
            progress=int(100 * done / b.total) if b.total else 100, metadata=b.metadata_json or {},
        ))
    return out
