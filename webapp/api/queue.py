"""`GET /v1/queue`: what runs and what waits, per queue, and how many GPUs (or runner slots) are busy.

Backs the page's queue panel; counts are global (the GPUs are shared), the waiting list is the caller's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from core import queries, queues
from webapp.deps import CallerDep, SessionDep, SettingsDep
from webapp.api.responses import errors
from core.models import Video
from core.settings import Backend, Settings
from core.status import VideoStatus

router = APIRouter(prefix="/v1/queue", tags=["queue"])


class QueueCounts(BaseModel):
    """One queue: videos running and waiting in it."""

    name: str
    running: int
    waiting: int


class Usage(BaseModel):
    """How many of a resource are busy; `total` is None when this process cannot know it."""

    in_use: int
    total: int | None


class Waiting(BaseModel):
    """A waiting video and its place in line (from Kueue in cluster mode)."""

    id: str
    queue: str
    position: int | None
    priority: str
    batch_id: str | None
    prompt: str


class QueuePublic(BaseModel):
    """The queue panel's data."""

    object: str = "queue"
    backend: str
    queues: list[QueueCounts]
    slots: Usage
    gpus: Usage
    waiting: list[Waiting]


@lru_cache(maxsize=1)
def _visible_gpu_count() -> int:
    # Lazy: the runner module is only needed (and nvidia-smi only run) in embedded mode, and once.
    from core.gpus import visible_gpus

    return len(visible_gpus())


def _capacity(request: Request, settings: Settings) -> tuple[int | None, int | None]:
    """(runner slots, GPUs) of this deployment, from the live runner when the server has one."""
    if settings.backend != Backend.local:
        return settings.cluster_gpus // settings.gpus_per_job, settings.cluster_gpus
    runner = getattr(request.app.state, "runner", None)
    if runner is not None:
        return runner.slots, len(runner.gpus)
    gpus = _visible_gpu_count()
    return settings.runner_slots or max(1, gpus), gpus


def queue_state(session: Session, *, request: Request, settings: Settings, tenant: str | None,
                limit: int = 10) -> QueuePublic:
    """Counts per queue and status, busy slots, and the first waiting videos of `tenant` in dispatch order."""
    rows = session.exec(
        select(Video.queue, Video.status, func.count()).where(
            col(Video.status).in_([VideoStatus.queued.value, VideoStatus.in_progress.value]))
        .group_by(Video.queue, Video.status)).all()
    counts: dict[str, dict[str, int]] = {q: {} for q in queues.NAMES}
    for queue, status, n in rows:
        counts.setdefault(queue, {})[str(getattr(status, "value", status))] = n
    per_queue = [QueueCounts(name=q, running=c.get(VideoStatus.in_progress.value, 0),
                          waiting=c.get(VideoStatus.queued.value, 0)) for q, c in counts.items()]
    # A job (process or pod) holds one slot however many videos it carries.
    busy = session.exec(select(func.count(func.distinct(Video.job_name))).where(
        Video.status == VideoStatus.in_progress.value, col(Video.job_name).is_not(None))).one()
    slots, gpus = _capacity(request, settings)
    if slots is not None:
        busy = min(busy, slots)
    per_job = settings.gpus_per_job if settings.backend != Backend.local else 1
    gpu_use = min(busy * per_job, gpus) if gpus else 0
    stmt = select(Video).where(Video.status == VideoStatus.queued.value)
    if tenant is not None:
        stmt = stmt.where(Video.tenant == tenant)
    head = list(session.exec(stmt.order_by(col(Video.job_name).is_not(None), Video.priority != "interactive",
                                           Video.seq).limit(limit)))
    positions = queries.queue_positions(session, head)
    waiting = [Waiting(id=v.id, queue=v.queue, position=positions.get(v.id), priority=v.priority,
                       batch_id=v.batch_id, prompt=v.prompt[:120]) for v in head]
    return QueuePublic(backend=settings.backend.value, queues=per_queue, slots=Usage(in_use=busy, total=slots),
                       gpus=Usage(in_use=gpu_use, total=gpus), waiting=waiting)


@router.get("", response_model=QueuePublic, responses=errors(400), summary="Queue state")
def get_queue(request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep,
              limit: Annotated[int, Query(ge=0, le=100)] = 10) -> QueuePublic:
    """Running and waiting counts per queue, busy slots and GPUs, and the first waiting videos."""
    return queue_state(session, request=request, settings=settings, tenant=caller.scope, limit=limit)
