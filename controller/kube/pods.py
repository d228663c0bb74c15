"""What the controller reads from its Job pods: where each runs, since when, why one waits, and what
went wrong in words a user can act on.

Pure functions over plain dicts (the API server's JSON), tested without a cluster. Two kinds of trouble
only a real node shows: a pod that cannot start (its image cannot be pulled, its config is broken),
which would otherwise wait in Kueue's admitted quota for ever, and a container the kernel killed at
its memory limit, which leaves no result record to explain the failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.kube.jobs import WAIT_CONTAINER, parse_time

# What kube-scheduler says when no node carries a pod's nodeSelector (the model-ready label).
SELECTOR_MISMATCH = "node affinity/selector"
# Waiting reasons of a container that will not start by itself (the kubelet retries pulls with backoff,
# but a missing image or a broken pod spec does not fix itself).
STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError")


class PodState:
    """`t2v_job_pods{state}`: every not-finished Job pod is in exactly one of these."""

    RUNNING = "running"
    MODEL_CACHE = "waiting_model_cache"  # its init container waits for READY, or no node has the model yet
    UNSCHEDULABLE = "unschedulable"  # the scheduler found no node (GPUs, taints, resources)
    STARTING = "starting"  # scheduled, not running yet (image pull, container start)

    ALL = (RUNNING, MODEL_CACHE, UNSCHEDULABLE, STARTING)


@dataclass(frozen=True)
class PodView:
    """One Job pod as the controller needs it."""

    job: str
    index: int
    node: str | None
    state: str  # a PodState
    running_since: float | None  # unix seconds its main container started, while it runs
    trouble: str | None = None  # why it cannot start (start_trouble), None while all is well
    created: str = ""  # creationTimestamp, RFC 3339


def read_pod(pod: dict, *, model_label: str = "") -> PodView | None:
    """The view of a Job pod (plain dict); None for a pod that is not one of a Job's indexes."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    job, index = labels.get("batch.kubernetes.io/job-name"), labels.get("batch.kubernetes.io/job-completion-index")
    if not job or index is None:
        return None
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    running_since = None
    if status.get("phase") == "Running":
        started = [parse_time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
                   for c in status.get("containerStatuses") or []]
        running_since = min((t for t in started if t is not None), default=None) or parse_time(status.get("startTime"))
    return PodView(job=job, index=int(index), node=spec.get("nodeName"),
                   state=_state(spec, status, model_label), running_since=running_since,
                   trouble=start_trouble(pod), created=metadata.get("creationTimestamp", ""))


def _state(spec: dict, status: dict, model_label: str) -> str:
    if status.get("phase") == "Running":
        return PodState.RUNNING
    for c in status.get("initContainerStatuses") or []:
        if c.get("name") == WAIT_CONTAINER and "running" in (c.get("state") or {}):
            return PodState.MODEL_CACHE
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        # With the model-ready node label set (h100 overlay), a pod no node matches waits for a cache.
        selector = spec.get("nodeSelector") or {}
        if model_label and model_label in selector and SELECTOR_MISMATCH in (scheduled.get("message") or ""):
            return PodState.MODEL_CACHE
        return PodState.UNSCHEDULABLE
    return PodState.STARTING


def _statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def start_trouble(pod: dict) -> str | None:
    """Why a pod's container cannot start, naming the image, or None."""
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            msg = (waiting.get("message") or "").strip()
            return (f"the job pod cannot start: {waiting['reason']} for image {cs.get('image')!r} "
                    f"(container {cs.get('name')})" + (f": {msg}" if msg else ""))
    return None


def end_reason(pod: dict) -> str | None:
    """How a failed pod's containers ended, e.g. killed at their memory limit; None if nothing tells."""
    limits = {c.get("name"): ((c.get("resources") or {}).get("limits") or {}).get("memory")
              for c in ((pod.get("spec") or {}).get("initContainers") or [])
              + ((pod.get("spec") or {}).get("containers") or [])}
    for cs in _statuses(pod):
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
        if term.get("reason") == "OOMKilled":
            return (f"the job pod was killed at its memory limit of {limits.get(cs.get('name')) or '?'} "
                    f"(OOMKilled, exit {term.get('exitCode')}); raise T2V_JOB_MEMORY_LIMIT on the controller")
        if term and term.get("exitCode") not in (None, 0):
            return f"the job pod's container {cs.get('name')} exited {term['exitCode']} ({term.get('reason')})"
    return None
