"""Webhook messages written in the same transaction as the status change they announce (outbox).

A deliverer (controller/housekeeping.py) sends them later, retried with backoff, signed per
Standard Webhooks; the API never waits for a receiver.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from sqlmodel import Session, col, func, select

from core.costmodel import units_by_model
from core.presenters import batches_public, video_public
from core.models import Batch, Video, WebhookDelivery, new_id
from core.status import VideoStatus


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256>` over `id.timestamp.body` with the tenant's `whsec_` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _enqueue(session: Session, *, tenant: str, object_id: str, event_type: str, url: str, data: dict) -> None:
    now = time.time()
    webhook_id = new_id("msg")
    payload = json.dumps({"type": event_type, "timestamp": int(now), "data": data}, sort_keys=True)
    session.add(WebhookDelivery(webhook_id=webhook_id, tenant=tenant, object_id=object_id, event_type=event_type,
                                url=url, payload=payload, next_attempt_at=now, created_at=now))


def on_video_terminal(session: Session, video: Video) -> None:
    """Queue the video's webhook, and its batch's when this was the batch's last active video."""
    if video.webhook_url:
        data = video_public(video, units=units_by_model(session)).model_dump(mode="json")
        _enqueue(session, tenant=video.tenant, object_id=video.id, event_type=f"video.{video.status}",
                 url=video.webhook_url, data=data)
    if not video.batch_id:
        return
    batch = session.exec(select(Batch).where(Batch.id == video.batch_id)).first()
    if batch is None or not batch.webhook_url or batch.notified_at is not None:
        return
    session.flush()
    active = session.exec(select(func.count()).select_from(Video).where(
        Video.batch_id == batch.id,
        col(Video.status).in_([VideoStatus.queued.value, VideoStatus.in_progress.value]))).one()
    if active:
        return
    batch.notified_at = time.time()
    session.add(batch)
    public = batches_public(session, [batch])[0]
    _enqueue(session, tenant=batch.tenant, object_id=batch.id, event_type=f"batch.{public.status}",
             url=batch.webhook_url, data=public.model_dump(mode="json"))


def deliveries(session: Session, *, object_id: str) -> list[WebhookDelivery]:
    """Webhook deliveries of a video or batch, oldest first."""
    return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.object_id == object_id)
                             .order_by(WebhookDelivery.seq)))


def delivery_public(d: WebhookDelivery) -> dict:
    """What the API shows of a delivery."""
    return {"webhook_id": d.webhook_id, "type": d.event_type, "url": d.url, "state": d.state,
            "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
            "created_at": int(d.created_at), "delivered_at": None if d.delivered_at is None else int(d.delivered_at),
            "next_attempt_at": int(d.next_attempt_at) if d.state == "pending" else None}
