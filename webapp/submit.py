"""Turning validated requests into queued rows: one transaction, idempotent, nothing else."""

from __future__ import annotations

import hashlib
import json
import time

import sqlalchemy as sa
from sqlmodel import Session, select

from core import crud, queries, queues
from core.errors import Conflict, InvalidParam, NotFound
from webapp.limits import check_submission, retention_seconds
from core.models import Batch, IdempotencyKey, Video, new_id
from core.costmodel import estimate, units_by_model
from core.params import VideoSpec
from core.settings import Settings


def route_queue(spec: VideoSpec, settings: Settings, units: dict[str, float]) -> str:
    """`short` or `long` by estimated GPU time (calibrated, core/costmodel.py), so long work cannot
    block interactive work."""
    cost = estimate(units, model=spec.model, num_frames=spec.num_frames, width=spec.width, height=spec.height,
                    steps=spec.num_inference_steps, guidance=spec.guidance_scale)
    return queues.route(cost, settings.long_queue_threshold_seconds)


def body_hash(payload: object) -> str:
    """Stable hash of a request body for Idempotency-Key comparisons."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _replay(session: Session, *, tenant: str, key: str | None, digest: str) -> str | None:
    if not key:
        return None
    if len(key) > 255:
        raise InvalidParam(f"Idempotency-Key has {len(key)} characters; the limit is 255", param="Idempotency-Key")
    row = session.get(IdempotencyKey, (tenant, key))
    if row is None:
        return None
    if row.body_sha256 != digest:
        raise Conflict(f"Idempotency-Key {key!r} was already used with a different request body",
                       param="Idempotency-Key", code="idempotency_key_reused")
    return row.object_id


def submit_video(session: Session, *, spec: VideoSpec, seed_given: bool, tenant: str, settings: Settings,
                 idempotency_key: str | None, webhook_url: str | None = None) -> tuple[Video, bool]:
    """Queue one video; returns (video, created). A replayed key returns the first video."""
    digest = body_hash({**spec.canonical(seed_given=seed_given), "webhook_url": webhook_url})
    for _ in range(2):
        existing = _replay(session, tenant=tenant, key=idempotency_key, digest=digest)
        if existing:
            try:
                return queries.get_video(session, video_id=existing, tenant=tenant), False
            except NotFound as e:  # the key's video was deleted since: replaying must not make another
                raise Conflict(f"Idempotency-Key {idempotency_key!r} created video {existing}, which has since been "
                               "deleted; send a new key to create another", param="Idempotency-Key",
                               code="idempotency_key_reused") from e
        check_submission(session, tenant=tenant, new_videos=1)
        video = crud.add_video(session, spec=spec, tenant=tenant, priority="interactive",
                               queue=route_queue(spec, settings, units_by_model(session)),
                               webhook_url=webhook_url,
                               retention_seconds=retention_seconds(session, tenant=tenant,
                                                                   default_days=settings.retention_days))
        if idempotency_key:
            session.add(IdempotencyKey(tenant=tenant, key=idempotency_key, body_sha256=digest,
                                       object_id=video.id, created_at=time.time()))
        try:
            session.commit()
            return video, True
        except sa.exc.IntegrityError:
            # Another request with the same key won the race: answer with its video.
            session.rollback()
    raise Conflict(f"Idempotency-Key {idempotency_key!r} is in use by a concurrent request; retry",
                   param="Idempotency-Key")


def submit_batch(session: Session, *, specs: list[VideoSpec], tenant: str, settings: Settings, name: str,
                 metadata: dict[str, str], idempotency_key: str | None, digest: str,
                 webhook_url: str | None = None) -> tuple[Batch, bool]:
    """Queue a batch of videos in one transaction; returns (batch, created)."""
    existing = _replay(session, tenant=tenant, key=idempotency_key, digest=digest)
    if existing:
        return queries.get_batch(session, batch_id=existing, tenant=tenant), False
    check_submission(session, tenant=tenant, new_videos=len(specs))
    now = time.time()
    keep = retention_seconds(session, tenant=tenant, default_days=settings.retention_days)
    units = units_by_model(session)
    batch = Batch(id=new_id("batch"), tenant=tenant, name=name, total=len(specs), created_at=now,
                  metadata_json=metadata, webhook_url=webhook_url)
    session.add(batch)
    session.flush()
    crud.add_videos_bulk(session, specs=specs, tenant=tenant, priority="batch",
                         queues=[route_queue(spec, settings, units) for spec in specs], retention_seconds=keep,
                         batch_id=batch.id, now=now)
    if idempotency_key:
        session.add(IdempotencyKey(tenant=tenant, key=idempotency_key, body_sha256=digest, object_id=batch.id,
                                   created_at=now))
    try:
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        existing = _replay(session, tenant=tenant, key=idempotency_key, digest=digest)
        if existing:
            return queries.get_batch(session, batch_id=existing, tenant=tenant), False
        raise
    return batch, True


def batch_videos(session: Session, *, batch_id: str) -> list[Video]:
    """Every video of a batch in row order."""
    return list(session.exec(select(Video).where(Video.batch_id == batch_id).order_by(Video.seq)))
