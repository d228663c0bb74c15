"""Data access: every read and write of videos, batches and events goes through here.

Functions take keyword-only arguments and a session; callers own the transaction.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, func, select

from webapp.errors import NotFound
from webapp.models import WAITING_SQL, Batch, Video, VideoEvent
from webapp.params import VideoSpec
from webapp.status import VideoStatus, can_move

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """`video_` / `batch_` plus 24 random base-36 characters (124 bits)."""
    n = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(24):
        n, r = divmod(n, 36)
        chars.append(ID_ALPHABET[r])
    return prefix + "_" + "".join(chars)


def _video_values(spec: VideoSpec, *, tenant: str, priority: str, queue: str, retention_seconds: float,
                  batch_id: str | None, batch_row: int | None, webhook_url: str | None, now: float) -> dict:
    """Column values of a new queued video."""
    return {
        "id": new_id("video"), "tenant": tenant, "batch_id": batch_id, "batch_row": batch_row,
        "status": VideoStatus.queued.value, "progress": 0, "model": spec.model, "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt, "num_frames": spec.num_frames, "width": spec.width,
        "height": spec.height, "fps": 30, "seed": spec.seed, "num_inference_steps": spec.num_inference_steps,
        "guidance_scale": spec.guidance_scale, "priority": priority, "queue": queue, "metadata_json": spec.metadata,
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


def get_video(session: Session, *, video_id: str, tenant: str | None, for_update: bool = False) -> Video:
    """A video by id, scoped to a tenant (None = any); NotFound otherwise."""
    stmt = select(Video).where(Video.id == video_id)
    if tenant is not None:
        stmt = stmt.where(Video.tenant == tenant)
    if for_update:
        stmt = stmt.with_for_update()
    video = session.exec(stmt).first()
    if video is None:
        raise NotFound(f"no video with id {video_id!r}", param="video_id")
    return video


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
    if not can_move(src, to):
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
        from webapp.outbox import on_video_terminal

        on_video_terminal(session, video)
    return True


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


def events(session: Session, *, video_id: str) -> list[VideoEvent]:
    """The status history of a video, oldest first."""
    return list(session.exec(select(VideoEvent).where(VideoEvent.video_id == video_id).order_by(VideoEvent.seq)))


def page(session: Session, model: type, *, tenant: str | None, after: str | None, limit: int, order: str,
         filters: Iterable = ()) -> tuple[list, bool]:
    """Keyset pagination over `seq`: stable while rows are inserted; returns (rows, has_more).

    The rows are read-only table rows (attribute access by column name), not ORM objects: a page
    is only shown, and building 20 tracked objects was a fifth of a list call's CPU.
    """
    stmt = sa.select(*model.__table__.columns)
    if tenant is not None:
        stmt = stmt.where(model.tenant == tenant)
    for f in filters:
        stmt = stmt.where(f)
    if after:
        cursor = session.exec(select(model.seq).where(model.id == after)).first()
        if cursor is None:
            raise NotFound(f"after={after!r} is not the id of an item in this list", param="after",
                           code="cursor_not_found")
        stmt = stmt.where(model.seq < cursor if order == "desc" else model.seq > cursor)
    stmt = stmt.order_by(model.seq.desc() if order == "desc" else model.seq.asc()).limit(limit + 1)
    rows = list(session.execute(stmt))
    return rows[:limit], len(rows) > limit


def queue_positions(session: Session, videos: list[Video]) -> dict[str, int]:
    """1-based place in line of each queued, not yet dispatched video (interactive before batch, then age).

    At most one counting query per priority for all of `videos`, each an index-only range scan of
    `ix_video_waiting`: a page of 20 counted separately, or through the table, walked the backlog
    20 times, and cost grew with a video's place in line.
    """
    queued = [v for v in videos if v.status == VideoStatus.queued]
    out = {v.id: v.queue_position for v in queued if v.queue_position is not None}
    todo = [v for v in queued if v.queue_position is None]
    if not todo:
        return out
    interactive = [v for v in todo if v.priority == "interactive"]
    batch = [v for v in todo if v.priority != "interactive"]
    # Interactive videos wait behind older interactive ones; batch videos behind every interactive one
    # and older batch ones.
    ahead = _count_before(session, "interactive", interactive, everything=bool(batch))
    if batch:
        all_interactive = ahead.pop("*")
        ahead.update({vid: n + all_interactive for vid, n in _count_before(session, "batch", batch).items()})
    out.update({vid: n + 1 for vid, n in ahead.items()})
    return out


def _count_before(session: Session, priority: str, videos: list[Video], *, everything: bool = False
                  ) -> dict[str, int]:
    """Waiting videos of `priority` older than each of `videos` (and all of them under "*").

    One statement of range counts over the gaps between the videos' `seq`s, summed here: each
    index entry is counted once. (One scan with a `FILTER` per video evaluated every filter on
    every entry: 2.5x slower on PostgreSQL for a page of 20.)
    """
    ordered = sorted(videos, key=lambda v: v.seq or 0)
    bounds = [v.seq or 0 for v in ordered]
    params: dict[str, object] = {"priority": priority, **{f"s{i}": b for i, b in enumerate(bounds)}}
    row = session.execute(_gap_counts(len(bounds), everything), params).one()
    out, total = {}, 0
    for video, n in zip(ordered, row, strict=False):
        total += n
        out[video.id] = total
    if everything:
        out["*"] = total + row[-1]
    return out


@lru_cache(maxsize=256)
def _gap_counts(n: int, everything: bool) -> sa.TextClause:
    """The statement of `_count_before` for `n` videos, written once: building it as an expression
    tree on every call cost as much CPU as PostgreSQL spent running it."""
    ranges = [f"seq >= :s{i - 1} AND seq < :s{i}" if i else "seq < :s0" for i in range(n)]
    if everything:
        ranges.append(f"seq >= :s{n - 1}" if n else "1 = 1")
    return sa.text("SELECT " + ", ".join(
        f"(SELECT count(*) FROM video WHERE {WAITING_SQL} AND priority = :priority AND {r})" for r in ranges))


def batch_counts(session: Session, *, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    """Videos per status for each batch, in one query."""
    out: dict[str, dict[str, int]] = {b: {} for b in batch_ids}
    if not batch_ids:
        return out
    rows = session.exec(
        select(Video.batch_id, Video.status, func.count()).where(col(Video.batch_id).in_(batch_ids))
        .group_by(Video.batch_id, Video.status)
    )
    for batch_id, status, n in rows:
        out[batch_id][str(status)] = n
    return out


def get_batch(session: Session, *, batch_id: str, tenant: str | None) -> Batch:
    """A batch by id, scoped to a tenant; NotFound otherwise."""
    stmt = select(Batch).where(Batch.id == batch_id)
    if tenant is not None:
        stmt = stmt.where(Batch.tenant == tenant)
    batch = session.exec(stmt).first()
    if batch is None:
        raise NotFound(f"no batch with id {batch_id!r}", param="batch_id")
    return batch


def active_videos(session: Session, *, batch_id: str | None = None) -> list[Video]:
    """Videos not yet in a terminal status (optionally of one batch)."""
    stmt = select(Video).where(col(Video.status).in_([VideoStatus.queued.value, VideoStatus.in_progress.value]))
    if batch_id:
        stmt = stmt.where(Video.batch_id == batch_id)
    return list(session.exec(stmt.order_by(Video.seq)))


def delete_video(session: Session, *, video: Video) -> None:
    """Remove a video row and its events (the caller deletes its files after commit)."""
    session.execute(sa.delete(VideoEvent).where(col(VideoEvent.video_id) == video.id))
    session.execute(sa.delete(Video).where(col(Video.id) == video.id))
