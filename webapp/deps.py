"""FastAPI dependencies as `Annotated` aliases: settings, DB session, storage, caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from jobcontract.storage import ObjectStore
from webapp.db import session_for
from webapp.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    # GET and HEAD only read: their SQLite transactions begin deferred and never wait for writers.
    write = request.method not in ("GET", "HEAD")
    with session_for(request.app.state.settings.db_url, write=write) as s:
        yield s


def _store(request: Request) -> ObjectStore:
    return request.app.state.store


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant whose videos they see, and whether they see all."""

    tenant: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """Tenant filter for queries: None for admins (all tenants)."""
        return None if self.admin else self.tenant


def _caller(request: Request) -> Caller:
    # Embedded default: one implicit tenant. API keys (per tenant) plug in here.
    return getattr(request.state, "caller", None) or Caller(tenant="default", admin=True)


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
StoreDep = Annotated[ObjectStore, Depends(_store)]
CallerDep = Annotated[Caller, Depends(_caller)]
