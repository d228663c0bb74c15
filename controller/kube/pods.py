"""What the controller reads from its Job pods: where each runs, since when, and why one waits.

Pure functions over plain dicts (the API server's JSON), tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.kube.jobs import WAIT_CONTAINER, parse_time

# What kube-scheduler says when no node carries a pod's nodeSelector (the model-ready label).
SELECTOR_MISMATCH = "node affinity/selector"


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


def read_pod(pod: dict, *, model_label: str = "") -> PodView | None:
    """The view of a Job pod (plain dict); None for a pod that is not one of a Job's indexes."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
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
                   state=_state(spec, status, model_label), running_since=running_since)


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
