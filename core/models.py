"""SQLModel tables and the API's request/response shapes, in small families.

Routes never return table objects: they build `VideoPublic`/`BatchPublic`.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, create_model
from sqlmodel import Field, SQLModel

from core import queues
from core.status import VideoStatus
from jobcontract.video import PARAM_FIELDS, VideoParams

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """`video_` / `batch_` plus 24 random base-36 characters (124 bits)."""
    n = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(24):
        n, r = divmod(n, 36)
        chars.append(ID_ALPHABET[r])
    return prefix + "_" + "".join(chars)

# Queued and not yet given to a job: the predicate of the partial index `ix_video_waiting`. Queries
# must spell it as this literal SQL, not bound parameters, for the planners to use that index.
WAITING_SQL = "status = 'queued' AND job_name IS NULL"


class Video(SQLModel, table=True):
    """One requested video; `seq` orders the list and backs cursor pagination."""

    __tablename__ = "video"
    __table_args__ = (
        sa.Index("ix_video_status_seq", "status", "seq"),
        sa.Index("ix_video_tenant_seq", "tenant", "seq"),
        sa.Index("ix_video_batch_seq", "batch_id", "seq"),
        sa.Index("ix_video_job_name", "job_name"),
        sa.Index("ix_video_tenant_created", "tenant", "created_at"),
        sa.Index("ix_video_expires", "expires_at"),
        sa.Index("ix_video_tenant_status", "tenant", "status"),
        # The line: counting the videos ahead of one is an index-only range scan.
        sa.Index("ix_video_waiting", "priority", "seq", sqlite_where=sa.text(WAITING_SQL),
                 postgresql_where=sa.text(WAITING_SQL)),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(sa_column=sa.Column(sa.String(40), unique=True, nullable=False))
    tenant: str = Field(default="default", max_length=64)
    batch_id: str | None = Field(default=None, max_length=40)
    batch_row: int | None = None  # CSV row number (1 = first data row) within its batch
    status: VideoStatus = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    progress: int = 0
    model: str = Field(max_length=64)
    prompt: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    negative_prompt: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    num_frames: int
    width: int
    height: int
    fps: int
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    num_inference_steps: int
    guidance_scale: float
    crf: int = Field(default=VideoParams.model_fields["crf"].default, sa_column_kwargs={"server_default": "18"})
    priority: str = Field(default="interactive", max_length=16)  # interactive | batch
    queue: str = Field(default=queues.SHORT.name, max_length=32)
    metadata_json: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: float
    updated_at: float
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # Dispatch bookkeeping: the job that owns the video now, and how many times it was started.
    job_name: str | None = Field(default=None, max_length=63)
    attempt: int = 0
    queue_position: int | None = None  # filled by the cluster watcher from Kueue; computed locally otherwise
    node: str | None = Field(default=None, max_length=253)
    # Result record, copied from object storage when the video completes.
    bytes: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    sha256: str | None = Field(default=None, max_length=64)
    gpu: str | None = Field(default=None, max_length=128)
    timings: dict[str, float] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    webhook_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    expired_at: float | None = None  # files deleted by the janitor after expires_at


class VideoEvent(SQLModel, table=True):
    """Append-only log of a video's status changes."""

    __tablename__ = "video_event"

    seq: int | None = Field(default=None, primary_key=True)
    video_id: str = Field(max_length=40, index=True)
    at: float
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    reason: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))


class Batch(SQLModel, table=True):
    """A group of videos submitted together (CSV upload or JSON list)."""

    __tablename__ = "batch"
    __table_args__ = (sa.Index("ix_batch_tenant_seq", "tenant", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(sa_column=sa.Column(sa.String(40), unique=True, nullable=False))
    tenant: str = Field(default="default", max_length=64)
    name: str = Field(default="", max_length=256)
    total: int
    cancelled_at: float | None = None
    created_at: float
    metadata_json: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    webhook_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    notified_at: float | None = None  # when its terminal webhook was queued


class IdempotencyKey(SQLModel, table=True):
    """Maps a client's Idempotency-Key to the video (or batch) it created."""

    __tablename__ = "idempotency_key"

    tenant: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    body_sha256: str = Field(max_length=64)
    object_id: str = Field(max_length=40)
    created_at: float


# ---- API shapes -------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    """`error` of a failed video, and the body of every API error."""

    code: str | None = None
    message: str
    type: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every API error: `{"error": {...}}`, as OpenAI does."""

    error: ErrorInfo


# A video's parameters as the public object shows them: VideoParams' fields, less width and height (shown
# as `size`) and less their limits (a stored video is shown as it is, even if a limit changed since).
PUBLIC_PARAMS = tuple(f for f in PARAM_FIELDS if f not in ("width", "height"))


class _VideoHead(BaseModel):
    """The first keys of the video object, before its parameters."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: str = "video"
    status: VideoStatus
    progress: int


_VideoParamsPublic = create_model("VideoParamsPublic", __base__=_VideoHead,
                                  **{f: (VideoParams.model_fields[f].annotation, ...) for f in PUBLIC_PARAMS})


class VideoPublic(_VideoParamsPublic):
    """The video object of the API: its state and its parameters (VideoParams', derived)."""

    seconds: str
    size: str
    created_at: int
    started_at: int | None
    completed_at: int | None
    expires_at: int | None
    error: ErrorInfo | None
    batch_id: str | None
    queue_position: int | None
    queue: str
    priority: str
    estimated_gpu_seconds: float
    metadata: dict[str, str]
    bytes: int | None = None
    sha256: str | None = None
    timings: dict[str, float] = {}
    notice: str | None = None


class VideoList(BaseModel):
    """A page of videos."""

    object: str = "list"
    data: list[VideoPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: str = "video.deleted"
    deleted: bool = True


class BatchCounts(BaseModel):
    total: int
    queued: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class BatchPublic(BaseModel):
    """The batch object of the API."""

    id: str
    object: str = "batch"
    status: str
    name: str
    created_at: int
    cancelled_at: int | None
    counts: BatchCounts
    progress: int
    metadata: dict[str, str]


class BatchList(BaseModel):
    object: str = "list"
    data: list[BatchPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


def as_dict(obj: Any) -> dict[str, Any]:
    """Plain dict of a pydantic model, for templates."""
    return obj.model_dump(mode="json")


# ---- access, delivery and retention --------------------------------------------------------


class Tenant(SQLModel, table=True):
    """A team or user; limits and retention are per tenant. Its Kueue LocalQueues are `<name>-short` and `<name>-long`."""

    __tablename__ = "tenant"

    name: str = Field(primary_key=True, max_length=64)
    created_at: float
    submissions_per_minute: int = 0  # 0: unlimited
    max_waiting: int = 0  # 0: unlimited
    retention_days: float | None = None  # None: the service default
    webhook_secret: str = Field(max_length=128)  # `whsec_...`, signs this tenant's webhooks


class ApiKey(SQLModel, table=True):
    """An API key: shown once as `t2v_<key_id>_<secret>`, stored as a SHA-256 of the secret."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=16)
    tenant: str = Field(max_length=64, index=True)
    secret_sha256: str = Field(max_length=64)
    admin: bool = False
    name: str = Field(default="", max_length=128)
    created_at: float
    revoked_at: float | None = None


class WebhookDelivery(SQLModel, table=True):
    """One webhook message (a terminal status of a video or batch) and its delivery attempts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_due", "state", "next_attempt_at"),)

    seq: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(sa_column=sa.Column(sa.String(40), unique=True, nullable=False))  # stable across retries
    tenant: str = Field(max_length=64)
    object_id: str = Field(max_length=40, index=True)
    event_type: str = Field(max_length=64)  # video.completed | video.failed | video.cancelled | batch.completed ...
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    state: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: float
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: float
    delivered_at: float | None = None
    lease_until: float | None = None  # a deliverer owns it until then (safe across replicas)
