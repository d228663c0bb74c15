"""Cluster-mode settings: the service settings plus what the controller needs to build Jobs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from core import queues
from core.settings import Settings


class ControllerSettings(Settings):
    """`T2V_*` settings for `t2v controller`; each default says why it is what it is."""

    # Where Jobs are made; the manifests' namespace, so RBAC stays namespaced.
    namespace: str = "t2v"
    # The jobimage; pinned by digest in the h100 overlay so a pod never runs an unexpected build.
    job_image: str = "t2v-jobimage:latest"
    # Mochi runs one pipeline per GPU; two per pod lets one video split its guidance (docs/decisions.md).
    gpus_per_pod: int = Field(2, ge=1, le=8)
    # The most GPUs one queue's work can hold at once (core/queues.py, which kueue/ agrees with): Kueue
    # never admits a Job asking for more (it would wait forever), so Job parallelism stays within these.
    # Set lower only for a smaller node; the test plane sets 8 where both LocalQueues share one queue.
    short_queue_max_gpus: int = Field(queues.SHORT.max_gpus, ge=1)
    long_queue_max_gpus: int = Field(queues.LONG.max_gpus, ge=1)
    # What one job pod asks for besides its GPUs: Mochi's text encoder and VAE decode run on the CPU side
    # of an 8 x H100 node with ~2 TB of memory; 96Gi leaves room for a 163-frame decode. Smaller nodes
    # (the test node: 2 cores) set these lower; a pod over its memory limit is OOM-killed and retried.
    job_cpu_request: str = "8"
    job_memory_request: str = "64Gi"
    job_memory_limit: str = "96Gi"
    # A job pod that cannot start (its image cannot be pulled, its spec is broken) fails its videos with the
    # kubelet's reason after this long, instead of holding its GPUs in Kueue's quota for ever; long enough
    # for a slow registry's first pull attempt and a retry or two (the kubelet backs off 10 s, 20 s, 40 s).
    pod_start_grace_seconds: float = Field(90.0, gt=0)
    # Items per pod (per completion index): the model load (~60 s from NVMe) is paid once per pod, so
    # 4 items of ~5 min each keep it under 5 % of the pod's time while a lost pod loses little work.
    items_per_pod: int = Field(4, ge=1, le=64)
    # Pods per batch Job: a CSV batch becomes Jobs of at most this many pods (x items_per_pod videos).
    # Kueue admits and preempts a Job whole, so one pod per Job lets a batch fill whatever GPUs are
    # free and lets a short video reclaim 2 borrowed GPUs by stopping one pod, not a batch-wide Job
    # of 8 GPUs (docs/performance.md, the fleet benchmark; docs/decisions.md). Above 1, kueue/'s
    # StrictFIFO ClusterQueues would hold narrow Workloads behind a wide head: use BestEffortFIFO.
    batch_pods_per_job: int = Field(1, ge=1, le=64)
    # Kueue LocalQueue names in the namespace (kueue/localqueues.yaml), used by the default tenant.
    short_queue: str = queues.SHORT.name
    long_queue: str = queues.LONG.name
    # Every other tenant gets LocalQueues of its own, `<tenant>-short` / `<tenant>-long`, made by the
    # controller on first use and pointing at these ClusterQueues; Kueue's admission fair sharing
    # then shares each ClusterQueue between tenants by usage (docs/decisions.md). Off: all share.
    tenant_queues: bool = True
    short_cluster_queue: str = queues.SHORT.cluster_queue
    long_cluster_queue: str = queues.LONG.cluster_queue
    # WorkloadPriorityClasses (kueue/priorities.yaml): people waiting at the page before scripts.
    interactive_priority_class: str = "t2v-interactive"
    batch_priority_class: str = "t2v-batch"
    # Node-local NVMe folder the model-cache DaemonSet fills; mounted read-only into job pods.
    model_cache_host_path: str = "/var/lib/t2v/models"
    # Label the DaemonSet sets once READY exists; empty = no selector (the kwok test node has none).
    model_ready_node_label: str = ""
    # Secret with S3 credentials for job pods (envFrom), referenced, never inlined.
    storage_secret: str = "t2v-storage"
    # Job pods' ServiceAccount (manifests/base/rbac.yaml): no token mounted, no rights.
    job_service_account: str = "t2v-job"
    # Extra annotations on every job pod (e.g. a scraper's or an autoscaler's); none by default.
    job_pod_annotations: dict[str, str] = Field(default_factory=dict)
    # Finished Jobs linger this long for `kubectl describe`, then the API server deletes them.
    job_ttl_seconds: int = Field(3600, ge=0)
    # Per-index retries for retryable exits (OOM, node trouble); bad items fail at once.
    backoff_limit_per_index: int = Field(2, ge=0)
    # A batch Job fails as a whole only when this many indexes failed (one bad index must fail alone).
    max_failed_indexes_fraction: float = Field(0.5, gt=0, le=1)
    # A full pass (every Job, pod and queue position) this often: level-triggered, so a missed event
    # costs at most one period. Between full passes the Job watch's changed Jobs are followed at once
    # (controller/kube/watch.py), so this is the safety net and the queue positions' refresh; with
    # 500 Jobs a full pass takes ~0.5 s here, and one every 2 s left quick reactions waiting behind
    # it (docs/performance.md, cluster mode).
    resync_seconds: float = Field(5.0, gt=0, le=300)
    # New rows make no Job event: an indexed look for undispatched rows this often keeps submit ->
    # Job created well under a second, for one query per poll.
    dispatch_poll_seconds: float = Field(0.25, gt=0, le=60)
    # A burst (500 videos at once) is dispatched in slices this long, so Jobs that end meanwhile are
    # settled between slices instead of after the whole burst.
    dispatch_slice_seconds: float = Field(0.25, gt=0, le=60)
    # Jobs created side by side in a burst (each: manifest write + POST through Kueue's webhooks):
    # 500 videos at once got their Jobs in 25 s with 4 against 55 s one at a time (docs/performance.md).
    # Units are claimed (Job name stored on the rows) before their creations start, so a crash leaves
    # up to this many claimed units, which the next pass or leader creates under the same names;
    # 1 keeps the strict claim, create, claim, create order.
    dispatch_concurrency: int = Field(4, ge=1, le=16)
    # Server-side watch timeout; below typical load-balancer idle cuts (5 min) so watches end cleanly.
    watch_timeout_seconds: int = Field(240, ge=10, le=3600)
    # Lease for leader election: one active controller; 15 s lease / 10 s renew as client-go's defaults.
    lease_name: str = "t2v-controller"
    lease_seconds: float = Field(15.0, gt=1)
    renew_seconds: float = Field(10.0, gt=0.5)
    @model_validator(mode="after")
    def _memory_fits(self) -> "ControllerSettings":
        # The API server refuses such a Job (422) on every pass, and its videos would wait for ever.
        if _bytes(self.job_memory_request, "T2V_JOB_MEMORY_REQUEST") > _bytes(self.job_memory_limit,
                                                                           "T2V_JOB_MEMORY_LIMIT"):
            raise ValueError(f"T2V_JOB_MEMORY_REQUEST={self.job_memory_request!r} is above "
                             f"T2V_JOB_MEMORY_LIMIT={self.job_memory_limit!r}: a pod may not ask for more than its limit")
        return self

    # Upper bound of videos dispatched per pass, so one pass stays short under a 5,000-row CSV.
    dispatch_batch: int = Field(500, ge=1)
    # `host:port` of the controller's Prometheus endpoint (/metrics), served by the leader and the
    # followers alike (docs/operations.md says which series only the leader fills). All addresses,
    # so the PodMonitor can reach it (manifests/components/monitoring); 8080 as controller-runtime's
    # default, clear of the webapp's 8000. Empty: no endpoint; port 0: any free port.
    metrics_address: str = "0.0.0.0:8080"

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if v and not (sep and host and port.isdigit() and int(port) <= 65535):
            raise ValueError(f"T2V_METRICS_ADDRESS={v!r} must be host:port (e.g. 0.0.0.0:8080), or empty for none")
        return v

    def queue(self, name: str) -> KueueQueue:
        """The Kueue side of queue `name` (core/queues.py) in this deployment; the settings above
        override the table's names and caps (a smaller node, the benchmarks' one FIFO queue)."""
        if name not in queues.BY_NAME:
            raise ValueError(f"queue {name!r} is not one of {list(queues.NAMES)} (core/queues.py)")
        if name == queues.SHORT.name:
            return KueueQueue(self.short_queue, self.short_cluster_queue, self.short_queue_max_gpus)
        return KueueQueue(self.long_queue, self.long_cluster_queue, self.long_queue_max_gpus)


@dataclass(frozen=True)
class KueueQueue:
    """A queue as this deployment's Jobs meet it: the default tenant's LocalQueue, its ClusterQueue,
    and the most GPUs one Job may ask of it."""

    local_queue: str
    cluster_queue: str
    max_gpus: int


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str, name: str) -> float:
    """A Kubernetes memory quantity (`256Mi`, `64Gi`, `1e9`, `500M`) in bytes."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity.strip())
    if not m:
        raise ValueError(f"{name}={quantity!r} is not a memory quantity such as 512Mi or 64Gi")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]
