"""Build the indexed `batch/v1` Job for a dispatch unit, and read its state back.

Pure functions over plain dicts (what the API server speaks), so they are tested without a cluster;
the kube backend (controller/kube/backend.py) of the generic loop only calls these.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobcontract.records import ExitCode, Manifest, manifest_key
from controller.settings import ControllerSettings

LABEL_APP = "app.kubernetes.io/name"
LABEL_VIDEO = "t2v.io/video-id"
LABEL_BATCH = "t2v.io/batch-id"
LABEL_TENANT = "t2v.io/tenant"
LABEL_QUEUE = "t2v.io/queue"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
ANNOTATION_VIDEOS = "t2v.io/video-ids"
CONTAINER = "t2v"
WAIT_CONTAINER = "wait-model-cache"  # init container: waits for the model cache's READY marker


def job_name(first_video_id: str, attempt: int) -> str:
    """A readable Job name from DB ids: the same videos and attempt always give the same name."""
    return f"t2v-{first_video_id.removeprefix('video_')}-a{attempt}"


def index_of(position: int, items_per_pod: int) -> int:
    """The completion index that owns the item at `position` (0-based, in seq order)."""
    return position // items_per_pod


DEFAULT_TENANT = "default"


def local_queue(settings: ControllerSettings, tenant: str, queue: str) -> str:
    """The LocalQueue a tenant's `short` or `long` work goes to (see ControllerSettings.tenant_queues)."""
    if tenant == DEFAULT_TENANT or not settings.tenant_queues:
        return settings.queue(queue).local_queue
    return f"{tenant}-{queue}"  # tenant names are DNS labels of at most 40 characters (webapp/auth.py)


def cluster_queue(settings: ControllerSettings, queue: str) -> str:
    return settings.queue(queue).cluster_queue


@dataclass(frozen=True)
class Unit:
    """What the Job labels say about its videos."""

    tenant: str
    queue: str  # short | long
    priority: str  # interactive | batch
    batch_id: str | None


def build_job(settings: ControllerSettings, manifest: Manifest, unit: Unit) -> dict:
    """The Job for `manifest`: suspended, indexed, under Kueue, with per-index retries."""
    completions = manifest.completions
    # Kueue admits by parallelism x requests and never beyond what the queue can hold with what it may
    # borrow: a Job asking for more waits forever (its Workload says "> maximum capacity").
    max_pods = max(1, min(settings.cluster_gpus, settings.queue(unit.queue).max_gpus) // settings.gpus_per_pod)
    video_ids = [i.video_id for i in manifest.items]
    labels = {
        LABEL_APP: "t2v-job",
        LABEL_MANAGED: "t2v-controller",
        LABEL_TENANT: unit.tenant,
        LABEL_QUEUE: unit.queue,
        "kueue.x-k8s.io/queue-name": local_queue(settings, unit.tenant, unit.queue),
        "kueue.x-k8s.io/priority-class": (settings.interactive_priority_class if unit.priority == "interactive"
                                          else settings.batch_priority_class),
    }
    if unit.batch_id:
        labels[LABEL_BATCH] = unit.batch_id
    if len(video_ids) == 1:
        labels[LABEL_VIDEO] = video_ids[0]
    pod_labels = {k: v for k, v in labels.items() if not k.startswith("kueue.x-k8s.io/")}
    gpus = str(settings.gpus_per_pod)
    ready = " && ".join(f"[ -f /models/{m}/READY ]" for m in sorted({i.model for i in manifest.items}))
    env = [
        {"name": "T2V_MANIFEST", "value": manifest_key(manifest.job_name)},
        {"name": "T2V_STORAGE_URL", "value": settings.objects_url},
        {"name": "T2V_MODEL_DIR", "value": "/models"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
    ]
    pod_spec: dict = {
        "restartPolicy": "Never",  # podFailurePolicy requires it; retries are the Job's, per index
        "serviceAccountName": settings.job_service_account,
        "automountServiceAccountToken": False,  # job pods have no API rights at all
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "initContainers": [{
            # `t2v model sync` writes <model>/READY last; wait for it rather than load half a model.
            "name": WAIT_CONTAINER, "image": settings.job_image,
            "command": ["sh", "-c", f"until {ready}; do echo waiting for the model cache READY; sleep 5; done"],
            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "securityContext": _container_security(),
        }],
        "containers": [{
            "name": CONTAINER, "image": settings.job_image, "command": ["python", "-m", "jobimage"],
            "env": env,
            "envFrom": [{"secretRef": {"name": settings.storage_secret, "optional": True}}],
            "resources": {
                "requests": {"cpu": settings.job_cpu_request, "memory": settings.job_memory_request,
                             "nvidia.com/gpu": gpus},
                "limits": {"memory": settings.job_memory_limit, "nvidia.com/gpu": gpus},
            },
            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "shm", "mountPath": "/dev/shm"}],
            "securityContext": _container_security(),
        }],
        "volumes": [
            {"name": "models", "hostPath": {"path": settings.model_cache_host_path, "type": "Directory"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        ],
    }
    if settings.model_ready_node_label:
        pod_spec["nodeSelector"] = {settings.model_ready_node_label: "true"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": manifest.job_name, "namespace": settings.namespace, "labels": labels,
                     "annotations": {ANNOTATION_VIDEOS: ",".join(video_ids)}},
        "spec": {
            "suspend": True,  # Kueue unsuspends it on admission
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": min(completions, max_pods),
            "backoffLimitPerIndex": settings.backoff_limit_per_index,
            "maxFailedIndexes": max(1, int(completions * settings.max_failed_indexes_fraction)) if completions > 1
            else 0,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": {"rules": [
                # Preemption, eviction, node drain: not the pod's fault, does not use up a retry.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                # A bad item or a broken setup: retrying this index cannot help; its result says why.
                {"action": "FailIndex", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                        "values": [int(ExitCode.BAD_ITEM), int(ExitCode.BAD_SETUP)]}},
            ]},
            "template": {"metadata": {"labels": pod_labels, "annotations": dict(settings.job_pod_annotations)},
                         "spec": pod_spec},
        },
    }


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


@dataclass(frozen=True)
class JobState:
    """What the controller needs to know about a Job, read from its status."""

    finished: bool  # Complete or Failed condition
    failed: bool
    running: bool  # admitted (unsuspended) and has active pods
    suspended: bool
    reason: str


def read_state(job: dict) -> JobState:
    """The state of a Job from its spec and status (plain dict as the API server returns it)."""
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return JobState(True, False, False, False, "job complete")
    if "Failed" in conds:
        c = conds["Failed"]
        return JobState(True, True, False, False, f"job failed: {c.get('reason')}: {c.get('message', '')}".strip())
    suspended = bool(spec.get("suspend"))
    running = not suspended and ((status.get("active") or 0) > 0 or (status.get("ready") or 0) > 0
                                 or (status.get("succeeded") or 0) > 0)
    reason = "waiting for Kueue admission" if suspended else "admitted"
    if suspended and "Suspended" in conds:
        reason = f"suspended: {conds['Suspended'].get('message') or conds['Suspended'].get('reason')}"
    return JobState(False, False, running, suspended, reason)


def workload_why(workload: dict | None) -> str | None:
    """Kueue's own words on why a Job waits or was stopped: Evicted/Preempted, else QuotaReserved=False."""
    if not workload:
        return None
    conds = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    for kind in ("Preempted", "Evicted"):
        c = conds.get(kind)
        if c and c.get("status") == "True":
            return f"{kind.lower()} by Kueue: {c.get('reason')}: {c.get('message', '')}".rstrip(": ")
    c = conds.get("QuotaReserved")
    if c and c.get("status") == "False" and c.get("message"):
        return f"waiting for Kueue: {c['message']}"
    return None


def failed_indexes(job: dict) -> set[int]:
    """Completion indexes that failed past their retries (`status.failedIndexes`, e.g. "1,3-4")."""
    return _index_set((job.get("status") or {}).get("failedIndexes"))


def _index_set(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if part.strip():
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def finished_indexes(job: dict) -> set[int]:
    """Completion indexes that ended for good (succeeded, or failed past their retries) so far.

    An indexed Job reports them while other indexes still run (`status.completedIndexes` and
    `status.failedIndexes`, e.g. "0,2-4"), so each index's videos can be settled when it ends.
    """
    status = job.get("status") or {}
    return _index_set(status.get("completedIndexes")) | _index_set(status.get("failedIndexes"))


def workload_stop(workload: dict | None) -> tuple[str, float | None]:
    """Kueue's reason for stopping an admitted Workload (e.g. `InCohortReclamation`, a metric label)
    and when it did; ("unknown", None) if the Workload does not say."""
    conds = {c.get("type"): c for c in ((workload or {}).get("status") or {}).get("conditions") or []}
    for kind in ("Preempted", "Evicted"):
        c = conds.get(kind)
        if c and c.get("status") == "True" and c.get("reason"):
            return str(c["reason"]), parse_time(c.get("lastTransitionTime"))
    return "unknown", None


def parse_time(value: str | None) -> float | None:
    """Unix seconds of an API server timestamp (RFC 3339, whole seconds or finer); None if absent."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def event_time(job: dict, event: str) -> float | None:
    """When the API server says a Job was `admitted` (unsuspended: its startTime) or `finished`; None
    if it does not say. Whole seconds: the API server drops the fraction. (When Kueue stopped a Job,
    its Workload says first: workload_stop.)"""
    status = job.get("status") or {}
    if event == "admitted":
        return parse_time(status.get("startTime"))
    conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    done = conds.get("Complete") or conds.get("SuccessCriteriaMet") or conds.get("Failed") or {}
    return parse_time(status.get("completionTime") or done.get("lastTransitionTime"))
