"""API keys and tenants: keys are `t2v_<key_id>_<secret>`, stored as SHA-256 of the secret.

Secrets are 256-bit random, so a plain SHA-256 is enough (no password stretching needed),
and the comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from sqlmodel import Session, select

from core.errors import APIError, InvalidParam, NotFound
from core.models import ApiKey, Tenant

TOKEN = re.compile(r"^t2v_([0-9a-z]{12})_([0-9A-Za-z_-]{43})$")
TENANT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class Unauthorized(APIError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_tenant(session: Session, *, name: str, submissions_per_minute: int | None = None,
                  max_waiting: int | None = None, retention_days: float | None = None) -> Tenant:
    """The tenant row, created on first use; given limits overwrite the stored ones."""
    if not TENANT_NAME.match(name):
        raise InvalidParam(f"tenant name {name!r} must be 1-40 lowercase letters, digits or '-' (it names a "
                           "Kueue LocalQueue)", param="tenant")
    tenant = session.get(Tenant, name)
    if tenant is None:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        tenant = Tenant(name=name, created_at=time.time(), webhook_secret=secret)
    if submissions_per_minute is not None:
        tenant.submissions_per_minute = submissions_per_minute
    if max_waiting is not None:
        tenant.max_waiting = max_waiting
    if retention_days is not None:
        tenant.retention_days = retention_days
    session.add(tenant)
    return tenant


def create_key(session: Session, *, tenant: str, admin: bool = False, name: str = "") -> tuple[ApiKey, str]:
    """Make a key for `tenant` (created if new); returns the row and the token, shown once."""
    ensure_tenant(session, name=tenant)
    key_id = "".join(secrets.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    key = ApiKey(key_id=key_id, tenant=tenant, secret_sha256=_sha(secret), admin=admin, name=name,
                 created_at=time.time())
    session.add(key)
    session.commit()
    return key, f"t2v_{key_id}_{secret}"


def revoke_key(session: Session, *, key_id: str) -> ApiKey:
    """Revoke a key at once; its requests get 401 from then on."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id!r}", param="key_id")
    key.revoked_at = key.revoked_at or time.time()
    session.add(key)
    session.commit()
    return key


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first."""
    return list(session.exec(select(ApiKey).order_by(ApiKey.created_at.desc())))


def names_a_key(authorization: str) -> bool:
    """Whether the header carries a t2v key, well-formed or not (`Bearer t2v_...`).

    OpenAI-style clients always send a bearer (the official SDK refuses to run without an
    api_key), so where keys are optional any other bearer is not ours to judge and is ignored.
    """
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and token.strip().startswith("t2v_")


def authenticate(session: Session, authorization: str) -> ApiKey:
    """The key behind an `Authorization: Bearer t2v_...` header, or Unauthorized."""
    scheme, _, token = authorization.partition(" ")
    m = TOKEN.match(token.strip()) if scheme.lower() == "bearer" else None
    if not m:
        raise Unauthorized("the Authorization header must be 'Bearer t2v_<key_id>_<secret>'",
                           param="Authorization", headers={"WWW-Authenticate": "Bearer"})
    key = session.get(ApiKey, m[1])
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.secret_sha256, _sha(m[2])):
        raise Unauthorized("this API key is unknown or revoked", param="Authorization",
                           headers={"WWW-Authenticate": "Bearer"})
    return key
