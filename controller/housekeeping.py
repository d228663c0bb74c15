"""Webhook delivery and retention: small loops that any number of replicas may run at once.

Each unit of work is claimed with a conditional UPDATE (a lease on a delivery, a
NULL->time mark on an expired video), so two replicas never send the same attempt or
fight over a file, and a replica that dies mid-way leaves work another one picks up.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from controller.results import discard_outputs
from jobcontract.storage import ObjectStore
from core.db import session_for
from core.models import Tenant, Video, WebhookDelivery
from core.outbox import sign
from core.webhook_targets import Policy, TargetRefused
from core.settings import Settings
from core.status import VideoStatus

log = logging.getLogger("t2v.housekeeping")

TERMINAL = [VideoStatus.completed.value, VideoStatus.failed.value, VideoStatus.cancelled.value]


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: 5 s doubling to at most an hour, with jitter."""
    return min(3600.0, 5.0 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


class Housekeeper:
    """Sends due webhooks and deletes expired videos' files."""

    def __init__(self, settings: Settings, store: ObjectStore, *, http: httpx.Client | None = None,
                 poll_seconds: float = 1.0, policy: Policy | None = None) -> None:
        self.settings = settings
        self.store = store
        # Never follow a redirect: it could lead to an address the policy refuses.
        self.http = http or httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
        self.policy = policy or Policy(allow_private=settings.webhooks_may_reach_private)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._last_janitor = 0.0

    def reconcile_once(self, *, now: float | None = None) -> None:
        """Send what is due; run the janitor when its interval has passed."""
        self.deliver_due(now=now)
        now = now or time.time()
        if now - self._last_janitor >= self.settings.janitor_interval_seconds:
            self._last_janitor = now
            self.expire(now=now)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile_once()
            except Exception:  # noqa: BLE001 - keep the loop alive; the next pass retries
                log.exception("housekeeping pass failed")
            self._stop.wait(self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()

    # ---- webhooks -----------------------------------------------------------------------------

    def deliver_due(self, *, now: float | None = None, limit: int = 20) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        now = now or time.time()
        lease = self.settings.webhook_timeout_seconds * 3
        with session_for(self.settings.db_url) as s:
            due = s.exec(select(WebhookDelivery.seq).where(
                WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                sa.or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now))
                .order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
            claimed = []
            for seq in due:
                res = s.execute(sa.update(WebhookDelivery).where(
                    col(WebhookDelivery.seq) == seq, WebhookDelivery.state == "pending",
                    sa.or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now))
                    .values(lease_until=now + lease))
                if res.rowcount == 1:
                    claimed.append(seq)
            s.commit()
        for seq in claimed:
            self._attempt(seq)
        return len(claimed)

    def _attempt(self, seq: int) -> None:
        with session_for(self.settings.db_url) as s:
            d = s.get(WebhookDelivery, seq)
            secret = s.get(Tenant, d.tenant).webhook_secret
        ts = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": d.webhook_id, "webhook-timestamp": str(ts),
                   "webhook-signature": sign(secret, d.webhook_id, ts, d.payload), "user-agent": "t2v-webhooks/1"}
        status, error = None, None
        try:
            url, pinned, extensions = self.policy.request(d.url)  # checked again now, then pinned
            resp = self.http.post(url, content=d.payload.encode(), headers={**headers, **pinned},
                                  extensions=extensions)
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"receiver answered HTTP {status}"
        except TargetRefused as e:
            error = f"not sent: {e}"[:500]
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500]
        with session_for(self.settings.db_url) as s:
            d = s.get(WebhookDelivery, seq)
            d.attempts += 1
            d.last_status, d.last_error, d.lease_until = status, error, None
            if error is None:
                d.state, d.delivered_at = "delivered", time.time()
            elif d.attempts >= self.settings.webhook_max_attempts:
                d.state = "failed"
            else:
                d.next_attempt_at = time.time() + backoff(d.attempts)
            s.add(d)
            s.commit()
        log.info("webhook attempt", extra={"webhook_id": d.webhook_id, "status": status, "error": error,
                                           "attempt": d.attempts, "state": d.state})

    # ---- retention ----------------------------------------------------------------------------

    def expire(self, *, now: float | None = None, limit: int = 500) -> int:
        """Delete files of finished videos past `expires_at` and mark them; returns how many."""
        now = now or time.time()
        with session_for(self.settings.db_url, write=False) as s:
            ids = s.exec(select(Video.id).where(
                col(Video.status).in_(TERMINAL), col(Video.expired_at).is_(None),
                col(Video.expires_at).is_not(None), col(Video.expires_at) < now).limit(limit)).all()
        done = 0
        for video_id in ids:
            # Files first: deleting is idempotent, so two replicas racing here is harmless; a crash
            # between the two steps leaves a row the next pass finishes, never a dangling file.
            discard_outputs(self.store, video_id)
            with session_for(self.settings.db_url) as s:
                res = s.execute(sa.update(Video).where(col(Video.id) == video_id, col(Video.expired_at).is_(None))
                                .values(expired_at=now, updated_at=now))
                s.commit()
                done += res.rowcount
        if done:
            log.info("expired videos", extra={"count": done})
        return done
