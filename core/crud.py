"""Data access, the writing side: every change to videos and batches goes through here (reads are in
core/queries.py). Functions take keyword-only arguments and a session; callers own the transaction.
A video's move to a terminal status queues its webhook in the same transaction (core/outbox.py).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from core.models import Video, VideoEvent, new_id
from core.outbox import on_video_terminal
from core.params import VideoSpec
from core.status import VideoStatus, can_move

def _video_values(spec: VideoSpec, *, tenant: str, priority: str, queue: str, retention_seconds: float,
                  batch_id: str | None, batch_row: int | None, webhook_url: str | None, now: float) -> dict:
    """Column values of a new queued video."""
    return {
        "id": new_id("video"), "tenant": tenant, "batch_id": batch_id, "batch_row": batch_row,
        "status": VideoStatus.queued.value, "progress": 0, **spec.params(),
        "priority": priority, "queue": queue, "metadata_json": spec.metadata,
        "created_at": now, "updated_at": now, "expires_at": now + retention_seconds, "attempt": 0, "timings": {},
        "webhook_url": webhook_url,
    }


def _first_event(video_id: str, now: float) -> dict:
    return {"video_id": video_id, "at": now, "from_status": None, "to_status": VideoStatus.queued.value,
            "reason": "submitted"}


def add_video(session: Session, *, spec: VideoSpec, tenant: str, priority: str, queue: str,
              retention_seconds: float, webhook_url: str | None = None, now: float | None = None) -> Video:
    """Stage a new queued video and its first event (the caller commits)."""
    now = now or time.time()
    video = Video(**_video_values(spec, tenant=tenant, priority=priority, queue=queue,
                                  retention_seconds=retention_seconds, batch_id=None, batch_row=None,
                                  webhook_url=webhook_url, now=now))
    session.add(video)
    session.add(VideoEvent(**_first_event(video.id, now)))
    return video


def add_videos_bulk(session: Session, *, specs: list[VideoSpec], tenant: str, priority: str, queues: list[str],
                    retention_seconds: float, batch_id: str, now: float) -> None:
    """Stage many queued videos of a batch and their first events as two multi-row INSERTs.

    The same rows `add_video` makes, without an ORM object per row: a 1,000-row CSV is
    accepted several times faster.
    """
    videos = [_video_values(spec, tenant=tenant, priority=priority, queue=queue, retention_seconds=retention_seconds,
                            batch_id=batch_id, batch_row=row, webhook_url=None, now=now)
              for row, (spec, queue) in enumerate(zip(specs, queues, strict=True), start=1)]
    session.execute(sa.insert(Video), videos)
    session.execute(sa.insert(VideoEvent), [_first_event(v["id"], now) for v in videos])


def transition(session: Session, *, video: Video, to: VideoStatus, reason: str, now: float | None = None,
               **fields: object) -> bool:
    """Move a video to `to` if allowed, with its event; returns False (and changes nothing) if not."""
    src = VideoStatus(video.status)
    if src == to:
        for k, v in fields.items():
            setattr(video, k, v)
        video.updated_at = now or time.time()
        session.add(video)
        return True
    if not can_move(src, to) or not _status_still(session, video, src, to):
        return False
    now = now or time.time()
    video.status = to
    video.updated_at = now
    for k, v in fields.items():
        setattr(video, k, v)
    if to == VideoStatus.in_progress and video.started_at is None:
        video.started_at = now
    if to.is_terminal():
        # Retention counts from the end, not from submission: keep the tenant's span, restarted now.
        keep = (video.expires_at - video.created_at) if video.expires_at else 0.0
        video.completed_at = now
        video.expires_at = now + keep if keep else None
        video.queue_position = None
        if to == VideoStatus.completed:
            video.progress = 100
    if to == VideoStatus.queued:
        video.progress = 0
    session.add(video)
    session.add(VideoEvent(video_id=video.id, at=now, from_status=src.value, to_status=to.value, reason=reason))
    if to.is_terminal():
        on_video_terminal(session, video)
    return True


def _status_still(session: Session, video: Video, src: VideoStatus, to: VideoStatus) -> bool:
    """Compare-and-set of the status in the database: moves the row to `to` only if it is still `src`.

    The object may be older than the row: the controller reads a pass's rows once, and the API may cancel
    one of them meanwhile (or the controller may finish one the API read a moment ago). Written from the
    stale object, the second move would add a second terminal event over the first. False, with the object
    reloaded as the database has it (or let go of, if deleted meanwhile), if the row has moved on; a new,
    not yet written row has no race.
    """
    if not sa.inspect(video).persistent:
        return True
    by_id = col(Video.id) == video.id
    moved = session.execute(sa.update(Video).where(by_id, col(Video.status) == src.value).values(status=to.value),
                            execution_options={"synchronize_session": False}).rowcount
    if moved:
        return True
    if session.execute(sa.select(col(Video.status)).where(by_id)).first() is None:
        session.expunge(video)  # deleted by the user: nothing of it is left to write
    else:
        session.refresh(video)
    return False


def claim_unit(session: Session, *, videos: list[Video], job_name: str, now: float) -> list[Video]:
    """Atomically take the queued, undispatched ones of `videos` for `job_name` (one statement); returns
    those taken, in the given order: a video someone else took is left out.

    The taken objects get the written values (job name, attempt) from the statement's RETURNING,
    as committed state: no reload is needed, and nothing is left for a later flush to write again.
    """
    ids = [v.id for v in videos]
    res = session.execute(
        sa.update(Video)
        .where(col(Video.id).in_(ids), col(Video.status) == VideoStatus.queued.value, col(Video.job_name).is_(None))
        .values(job_name=job_name, attempt=Video.attempt + 1, updated_at=now)
        .returning(col(Video.id), col(Video.attempt)),
        execution_options={"synchronize_session": False},  # set below from what the database wrote
    )
    attempts = dict(res.all())
    taken = [v for v in videos if v.id in attempts]
    for v in taken:
        set_committed_value(v, "job_name", job_name)
        set_committed_value(v, "attempt", attempts[v.id])
        set_committed_value(v, "updated_at", now)
    return taken


def unclaim(session: Session, *, video_id: str, job_name: str) -> bool:
    """Undo `claim` for a job that never started: the video waits again and keeps its attempt."""
    res = session.execute(
        sa.update(Video)
        .where(col(Video.id) == video_id, col(Video.status) == VideoStatus.queued.value,
               col(Video.job_name) == job_name)
        .values(job_name=None, attempt=Video.attempt - 1)
    )
    return res.rowcount == 1


def delete_video(session: Session, *, video: Video) -> None:
    """Remove a video row and its events (the caller deletes its files after commit)."""
    session.execute(sa.delete(VideoEvent).where(col(VideoEvent.video_id) == video.id))
    session.execute(sa.delete(Video).where(col(Video.id) == video.id))
