"""What a job pod's status says went wrong, in words a user can act on.

Pure functions over the pod dicts the API server returns. Two kinds of trouble only a real node
shows: a pod that cannot start (its image cannot be pulled, its config is broken), which would
otherwise wait in Kueue's admitted quota for ever, and a container the kernel killed at its memory
limit, which leaves no result record to explain the failure.
"""

from __future__ import annotations

from dataclasses import dataclass

# Waiting reasons of a container that will not start by itself (the kubelet retries pulls with backoff,
# but a missing image or a broken pod spec does not fix itself).
STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError")


@dataclass(frozen=True)
class PodView:
    """One live job pod: where it runs, and why it cannot start (None while all is well)."""

    node: str | None
    trouble: str | None
    created: str  # creationTimestamp, RFC 3339


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


def view(pod: dict) -> PodView:
    return PodView(node=(pod.get("spec") or {}).get("nodeName"), trouble=start_trouble(pod),
                   created=(pod.get("metadata") or {}).get("creationTimestamp", ""))


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
