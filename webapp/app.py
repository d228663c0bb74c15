"""The FastAPI application: routers, error bodies, metrics, start-up checks."""

from __future__ import annotations

import logging

import anyio
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobcontract.storage import open_store
from webapp.api import batches, health, openapi, queue, videos
from core import webhook_targets
from webapp.auth import ensure_tenant
from core.db import migrate, session_for
from core.errors import APIError
from webapp.pages import router as pages_router
from core.settings import Settings, get_settings
from core.catalog import available_models
from core.tokens import TokenCounter

log = logging.getLogger("t2v.webapp")


def _error(status: int, message: str, *, type_: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            probe = {**request.scope}
            for m in route.methods:
                probe["method"] = m
                if route.matches(probe)[0] == Match.FULL:
                    methods.add(m)
    return sorted(methods)


def ensure_default_tenant(db_url: str) -> None:
    """The tenant of requests without an API key: no limits, its own webhook secret."""
    with session_for(db_url) as s:
        ensure_tenant(s, name="default")
        try:
            s.commit()
        except sa.exc.IntegrityError:  # another replica made it first
            s.rollback()


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    if run_migrations:
        migrate(settings.db_url)
        ensure_default_tenant(settings.db_url)
    app = FastAPI(title="t2v", version="0.1.0",
                  description="Batch-first text-to-video. `/v1/videos` follows OpenAI's Videos API; "
                              "cancel, batches, seed, negative prompt, steps, queue position and filters are extras.")
    app.state.settings = settings
    app.state.store = open_store(settings.objects_url)
    app.state.tokens = (TokenCounter(settings.models_path, store=app.state.store, models=available_models(settings))
                        if settings.check_prompt_tokens else None)
    app.state.metrics = health.make_metrics(settings.db_url)
    app.state.db_slots = anyio.Semaphore(settings.db_pool_size)  # see deps._db_slot
    app.state.webhook_policy = webhook_targets.Policy(allow_private=settings.webhooks_may_reach_private)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        value = err.get("input")
        return _error(400, f"{param or 'request'}: {err.get('msg', 'invalid')} (got {value!r})",
                      type_="invalid_request_error", param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            message = f"method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
            headers = {"Allow": ", ".join(allowed)}
        return _error(exc.status_code, message, type_=type_, code=str(exc.status_code), headers=headers)

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # The database restarting or unreachable: say so and when to retry, not a bare 500.
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)[:200]})
        return _error(503, "the database is unavailable right now; retry shortly", type_="server_error",
                      code="database_unavailable", headers={"Retry-After": "2"})

    @app.exception_handler(sa.exc.TimeoutError)
    async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
        # Every pooled connection stayed busy for db_pool_timeout_seconds: the database is stuck
        # or far slower than usual. Say so and when to retry, not a bare 500.
        log.warning("database connections exhausted", extra={"path": request.url.path, "error": str(exc)[:200]})
        return _error(503, f"all {settings.db_pool_size + settings.db_max_overflow} database connections of this "
                      f"server stayed busy for {settings.db_pool_timeout_seconds:g} s; retry shortly",
                      type_="server_error", code="database_unavailable", headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return _error(500, "internal error; the server log has the details", type_="server_error")

    app.add_middleware(health.MetricsMiddleware)
    app.include_router(health.router)
    app.include_router(videos.router)
    app.include_router(batches.router)
    app.include_router(queue.router)
    app.include_router(pages_router)
    openapi.install(app, settings)
    return app
