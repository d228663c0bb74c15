"""One settings object for the service, read from `T2V_*` environment variables.

A bad value stops start-up with a message that names the variable and the value.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core import queues


class Backend(str, Enum):
    """Where videos run."""

    local = "local"  # subprocesses on this machine (embedded mode)
    kubernetes = "kubernetes"  # indexed Jobs under Kueue (cluster mode)


class Settings(BaseSettings):
    """Service settings; every field is `T2V_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="T2V_", extra="ignore")

    data_dir: Path = Field(Path("t2v-data"), description="Root for the embedded defaults (DB, objects, models).")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at <data_dir>/t2v.db.")
    storage_url: str = Field("", description="file:// or s3:// URL; empty means <data_dir>/objects.")
    backend: Backend = Backend.local
    model: str = Field("tiny", description="Model used when a request names none.")
    model_dir: Path | None = Field(None, description="Folder with one subfolder per model; empty: <data_dir>/models.")
    # A comma-separated list in the environment (`T2V_MODELS=tiny,mochi-1-preview`), as a ConfigMap holds it.
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models the API accepts; empty: tiny plus every synced folder in model_dir (local backend).",
    )
    # Local runner: how many job processes at once. 0 = one per visible GPU, or 1 on CPU.
    runner_slots: int = Field(0, ge=0, le=64)
    # Cluster mode: the GPUs Kueue's ClusterQueues hold in all (8 = one H100 node), and per job pod
    # (Mochi runs one pipeline per GPU; two per pod lets one video split its guidance).
    cluster_gpus: int = Field(queues.CLUSTER_GPUS, ge=1)
    gpus_per_job: int = Field(2, ge=1, le=8)
    # Items one job process takes; each process loads the model once, so more items amortise the load.
    items_per_job: int = Field(4, ge=1, le=64)
    # How often the runner looks at the DB and the job processes; small enough that progress feels live.
    runner_poll_seconds: float = Field(0.5, gt=0, le=60)
    # Retries of a job that failed with a retryable exit code (OOM, storage down) before the video fails.
    max_attempts: int = Field(3, ge=1, le=20)
    # Days a finished video is kept before the janitor may delete it (expires_at).
    retention_days: float = Field(7.0, gt=0)
    # Videos whose estimated GPU time is above this go to the `long` queue, the rest to `short` (core/queues.py).
    long_queue_threshold_seconds: float = Field(queues.SHORT.max_cost_seconds, gt=0)
    max_idempotency_key_chars: int = 255
    # Downloads from S3/MinIO storage: GET .../content answers 302 to a presigned URL valid this long,
    # so video bytes skip the webapp. None = on in cluster mode, off on the embedded default (whose
    # file:// storage has no such URL anyway). s3_public_url: where clients reach the store, when not
    # where we do (an in-cluster MinIO behind an ingress, say); empty = the storage URL's endpoint.
    download_redirect: bool | None = None
    presign_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    s3_public_url: str = Field("", pattern=r"^(https?://[^/?#\s]+/?)?$")
    max_batch_rows: int = Field(5000, ge=1)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Count prompt tokens at submission with the model's tokenizer.json: the model folder's, else the copy
    # the model cache published to storage (core/tokens.py). Off only to let an over-limit prompt reach the
    # pod, as a test of the pod's check does.
    check_prompt_tokens: bool = True
    # API keys: None means required with the kubernetes backend, optional on the embedded default.
    auth_required: bool | None = None
    # Outgoing webhooks: per-attempt timeout, and how many attempts before a delivery is marked failed.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(12, ge=1, le=50)
    # Webhooks to loopback, private, link-local or cluster-internal addresses: allowed on the embedded
    # default (one user, their own machine), refused in cluster mode (tenants must not reach in-cluster
    # services through us). None = by mode; see core/webhook_targets.py.
    webhook_private_targets: bool | None = None
    # How often the janitor looks for expired videos.
    janitor_interval_seconds: float = Field(300.0, gt=0)
    # Database connections of one process (one replica). A replica is one Python process, so it
    # serves about one core: a few connections keep it busy on a database a millisecond away.
    # At most db_pool_size requests hold a session at once; the others wait their turn without a
    # worker thread, so no worker thread ever waits for a connection (deps._db_slot). Overflow
    # serves API-key look-ups, probes, the metrics scrape and the embedded runner. Two replicas
    # and a controller (30 each) stay under PostgreSQL's default max_connections of 100.
    db_pool_size: int = Field(20, ge=1, le=200)
    db_max_overflow: int = Field(10, ge=0, le=200)
    # A checkout that waits this long means the database is stuck: answer 503 with Retry-After
    # well inside a client's usual 30 s timeout rather than let the request hang.
    db_pool_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # How long an idle HTTP keep-alive connection stays open. Longer than the idle timeout of the
    # clients and proxies in front (httpx 5 s, nginx upstream and cloud load balancers 60 s), so
    # they close idle connections, not the server: a request sent just as the server closes its
    # connection fails (uvicorn's 5 s default cut requests of a 200-client load run).
    http_keep_alive_seconds: int = Field(75, ge=1, le=3600)
    log_level: str = "INFO"
    # text: `message key=value ...` for people; json: one object per line for log collectors (core/log.py).
    log_format: str = "text"
    htmx_source: str = Field("cdn", description="cdn, or local to serve the copy fetched by `make htmx`.")

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: object) -> object:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"T2V_LOG_LEVEL={v!r} is not one of DEBUG, INFO, WARNING, ERROR")
        return v.upper()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v.lower() not in ("text", "json"):
            raise ValueError(f"T2V_LOG_FORMAT={v!r} is not one of text, json")
        return v.lower()

    @field_validator("htmx_source")
    @classmethod
    def _htmx(cls, v: str) -> str:
        if v not in ("cdn", "local"):
            raise ValueError(f"T2V_HTMX_SOURCE={v!r} must be 'cdn' or 'local'")
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if v and not v.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError(f"T2V_DATABASE_URL={v!r} must be a sqlite:// or postgresql:// URL")
        if v.startswith("postgres:"):
            v = "postgresql+psycopg:" + v[len("postgres:"):]
        if v.startswith("postgresql:"):
            v = "postgresql+psycopg:" + v[len("postgresql:"):]
        return v

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, v: str) -> str:
        if v and not v.startswith(("file://", "s3://")):
            raise ValueError(f"T2V_STORAGE_URL={v!r} must start with file:// or s3://")
        return v

    @property
    def auth_is_required(self) -> bool:
        """Whether requests without an API key are refused."""
        return self.backend == Backend.kubernetes if self.auth_required is None else self.auth_required

    @property
    def redirects_downloads(self) -> bool:
        """Whether content downloads answer with a redirect to a presigned storage URL (S3 only)."""
        return self.backend == Backend.kubernetes if self.download_redirect is None else self.download_redirect

    @property
    def webhooks_may_reach_private(self) -> bool:
        """Whether webhook URLs may point at loopback, private or cluster-internal addresses."""
        if self.webhook_private_targets is not None:
            return self.webhook_private_targets
        return self.backend == Backend.local

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{(self.data_dir / 't2v.db').resolve()}"

    @property
    def objects_url(self) -> str:
        """The effective object storage URL."""
        return self.storage_url or f"file://{(self.data_dir / 'objects').resolve()}"

    @property
    def models_path(self) -> Path:
        """The effective model folder."""
        return (self.model_dir or self.data_dir / "models").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings()
