"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import session_for
from core.models import Video

router = APIRouter(tags=["health"])


class VideoStatusCollector:
    """`t2v_videos{status=...}` read from the DB at scrape time, so every replica reports the same."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def collect(self):  # noqa: ANN201
        gauge = GaugeMetricFamily("t2v_videos", "Videos by status", labels=["status"])
        try:
            with session_for(self.db_url, write=False) as s:
                for status, n in s.execute(sa.select(Video.status, sa.func.count()).group_by(Video.status)):
                    gauge.add_metric([str(status)], n)
        except sa.exc.SQLAlchemyError:
            pass
        yield gauge


def make_metrics(db_url: str) -> tuple[CollectorRegistry, Counter, Histogram]:
    """A registry per app, so tests can build many apps in one process."""
    registry = CollectorRegistry()
    registry.register(VideoStatusCollector(db_url))
    requests = Counter("t2v_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("t2v_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    return registry, requests, latency


@router.get("/healthz", summary="Liveness")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses={503: {"description": "Database or storage unreachable"}})
def readyz(request: Request) -> Response:
    """The database and object storage answer."""
    checks = {}
    try:
        with session_for(request.app.state.settings.db_url, write=False) as s:
            s.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(e).__name__}"
    try:
        request.app.state.store.exists("readyz-probe")
        checks["storage"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["storage"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = generate_latest(request.app.state.metrics[0])
    # `t2v serve` (local backend): the runner's queue, wait, failure and GPU-time metrics, under the
    # names the cluster controller serves on its own port (controller/metrics.py).
    runner = getattr(request.app.state, "runner", None)
    if runner is not None:
        body += generate_latest(runner.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts every HTTP request and its latency by route template (not raw path, to bound cardinality).

    Plain ASGI: Starlette's `BaseHTTPMiddleware` ran each response through a task group and a
    memory stream, a sixth of the CPU of a request; and it never saw a request that ended in an
    unhandled exception, which this counts as the 500 it becomes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # set by the router on this scope
            _, requests, latency = scope["app"].state.metrics
            requests.labels(scope["method"], route, str(status)).inc()
            latency.labels(scope["method"], route).observe(time.perf_counter() - started)
