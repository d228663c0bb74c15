"""FastAPI dependencies as `Annotated` aliases: settings, DB session, storage, caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
import sqlalchemy as sa
from fastapi import Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from jobcontract.storage import ObjectStore
from core.db import session_for
from core.settings import Settings
from core.tokens import REFRESH_WAIT_S, TokenCounter


# Dependencies that only read app state are async: a plain `def` would take a worker thread
# (and a turn in its queue) per request for an attribute read.
async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _session(request: Request) -> AsyncIterator[Session]:
    # Admission to the connection pool: at most db_pool_size requests hold a session, the rest
    # wait here in order, on the event loop, without a worker thread. Without it, requests whose
    # session still held a connection waited for a worker thread (FastAPI validates a sync route's
    # response on one) while every worker thread waited for a connection: a deadlock that only the
    # pool timeout broke (measured with 200 clients on two replicas, docs/reliability.md).
    async with request.app.state.db_slots:
        # GET and HEAD only read: their SQLite transactions begin deferred and never wait for writers,
        # and on PostgreSQL they run without a transaction (core/db.py).
        write = request.method not in ("GET", "HEAD")
        # A Session does no I/O until its first statement (in the route's worker thread), so it is
        # made here, and given back here when that needs no I/O either: a worker thread for each
        # end cost two thread hand-offs per request, a fifth of a status call's CPU.
        session = session_for(request.app.state.settings.db_url, write=write)
        try:
            yield session
        finally:
            if write and session.in_transaction():
                await run_in_threadpool(_close, session)  # a write not committed: its ROLLBACK may wait
            else:
                _close(session)  # a read (ROLLBACK of a deferred SQLite read, or none) or nothing open


def _close(session: Session) -> None:
    try:
        session.close()
    except sa.exc.DBAPIError:
        # The connection died under us (database restart); the pool drops it. The answer is
        # already decided, so failing here would only cut the client's connection.
        pass


async def _store(request: Request) -> ObjectStore:
    return request.app.state.store


async def _tokens(request: Request) -> TokenCounter | None:
    # Published tokenizers are read from storage in a worker thread, once per refresh period; the
    # request waits for that read at most REFRESH_WAIT_S.
    counter = request.app.state.tokens
    if counter is not None and counter.refresh_due():
        with anyio.move_on_after(REFRESH_WAIT_S):
            await anyio.to_thread.run_sync(counter.refresh, abandon_on_cancel=True)
    return counter


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant whose videos they see, and whether they see all."""

    tenant: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """Tenant filter for queries: None for admins (all tenants)."""
        return None if self.admin else self.tenant


def _checks_key(settings: Settings, header: str | None) -> bool:
    """Whether the request's Authorization header is looked up: always where keys are required;
    otherwise only when it names a t2v key (any other bearer, e.g. an OpenAI SDK's placeholder, is
    ignored and the request is anonymous)."""
    from webapp.auth import names_a_key

    return bool(header) and (settings.auth_is_required or names_a_key(header))


def current_caller(request: Request) -> Caller:
    """The tenant behind the request's API key; without one, the default tenant unless keys are required."""
    from webapp.auth import Unauthorized, authenticate

    header = request.headers.get("authorization")
    settings: Settings = request.app.state.settings
    if _checks_key(settings, header):
        with session_for(settings.db_url, write=False) as s:
            key = authenticate(s, header)
        return Caller(tenant=key.tenant, admin=key.admin)
    if settings.auth_is_required:
        raise Unauthorized("this server requires an API key: send 'Authorization: Bearer t2v_...' "
                           "(create one with `t2v keys create --tenant NAME`)", param="Authorization",
                           headers={"WWW-Authenticate": "Bearer"})
    return Caller(tenant="default", admin=True)


async def _caller(request: Request) -> Caller:
    # A worker thread only when there is a key to look up in the database.
    if _checks_key(request.app.state.settings, request.headers.get("authorization")):
        return await run_in_threadpool(current_caller, request)
    return current_caller(request)


SettingsDep = Annotated[Settings, Depends(_settings)]
# scope="function": the session closes, and its connection and admission slot are given back, when
# the route function returns, not after the response has been sent to the client.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
StoreDep = Annotated[ObjectStore, Depends(_store)]
# Counts a prompt's tokens with the model's tokenizer (None: counting is off).
TokensDep = Annotated[TokenCounter | None, Depends(_tokens)]
CallerDep = Annotated[Caller, Depends(_caller)]
