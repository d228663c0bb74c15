"""Per-tenant limits, counted in the database so every webapp replica enforces the same numbers."""

from __future__ import annotations

import math
import time

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from core.errors import TooManyRequests
from core.models import Batch, Tenant, Video
from core.status import VideoStatus

WINDOW = 60.0


def check_submission(session: Session, *, tenant: str, new_videos: int, now: float | None = None) -> None:
    """Refuse (429) a submission over the tenant's per-minute or waiting limits.

    Call inside the writing transaction: the tenant row is locked (PostgreSQL) or the
    database write lock is held (SQLite), so concurrent replicas cannot both slip past.
    A limit of 0 means unlimited (the embedded default tenant).
    """
    row = session.get(Tenant, tenant)
    if row is None or (not row.submissions_per_minute and not row.max_waiting):
        return  # unlimited: no lock, so unlimited tenants never queue behind each other
    row = session.exec(select(Tenant).where(Tenant.name == tenant).with_for_update()).one()
    now = now or time.time()
    since = now - WINDOW
    singles = select(func.count(), func.min(Video.created_at)).where(
        Video.tenant == tenant, Video.created_at > since, col(Video.batch_id).is_(None))
    batches = select(func.count(), func.min(Batch.created_at)).where(Batch.tenant == tenant, Batch.created_at > since)
    (n1, t1), (n2, t2) = session.exec(singles).one(), session.exec(batches).one()
    if row.submissions_per_minute and n1 + n2 + 1 > row.submissions_per_minute:
        oldest = min(t for t in (t1, t2) if t is not None)
        retry = max(1, math.ceil(oldest + WINDOW - now))
        raise TooManyRequests(
            f"tenant {tenant!r} is over its limit of {row.submissions_per_minute} submissions per minute; "
            f"retry in {retry} s", param="submissions_per_minute", headers={"Retry-After": str(retry)})
    waiting = session.exec(select(func.count()).select_from(Video).where(
        Video.tenant == tenant,
        sa.or_(Video.status == VideoStatus.queued.value, Video.status == VideoStatus.in_progress.value))).one()
    if row.max_waiting and waiting + new_videos > row.max_waiting:
        raise TooManyRequests(
            f"tenant {tenant!r} would have {waiting + new_videos} videos waiting or running; the limit is "
            f"{row.max_waiting}", param="max_waiting", headers={"Retry-After": "30"})


def retention_seconds(session: Session, *, tenant: str, default_days: float) -> float:
    """How long this tenant's finished videos are kept."""
    row = session.get(Tenant, tenant)
    days = row.retention_days if row is not None and row.retention_days is not None else default_days
    return days * 86400
