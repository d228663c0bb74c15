"""Reading Job pods, Job event times and Kueue's stop reason: pure functions over the API server's JSON."""

from __future__ import annotations

import pytest

from controller.kube.jobs import event_time, parse_time, workload_stop
from controller.kube.pods import PodState, read_pod

LABEL = "t2v.io/model-cache-ready"


def pod(phase: str = "Pending", *, node: str | None = "gpu-node-0", conditions=(), init=None, containers=None,
        selector: dict | None = None) -> dict:
    status = {"phase": phase, "conditions": list(conditions)}
    if init is not None:
        status["initContainerStatuses"] = init
    if containers is not None:
        status["containerStatuses"] = containers
    spec = {"nodeName": node} if node else {}
    if selector:
        spec["nodeSelector"] = selector
    return {"metadata": {"labels": {"batch.kubernetes.io/job-name": "t2v-abc-a1",
                                    "batch.kubernetes.io/job-completion-index": "2"}},
            "spec": spec, "status": status}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}
NO_GPUS = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
           "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}


@pytest.mark.parametrize(("p", "state"), [
    pytest.param(pod("Running", containers=[{"name": "t2v", "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}}]),
                 PodState.RUNNING, id="running"),
    pytest.param(pod(init=[{"name": "wait-model-cache", "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}}]),
                 PodState.MODEL_CACHE, id="init-container-waits-for-READY"),
    pytest.param(pod(node=None, conditions=[UNSCHEDULABLE], selector={LABEL: "true"}), PodState.MODEL_CACHE,
                 id="no-node-has-the-model-label"),
    pytest.param(pod(node=None, conditions=[NO_GPUS], selector={LABEL: "true"}), PodState.UNSCHEDULABLE,
                 id="no-gpus-left"),
    pytest.param(pod(node=None, conditions=[UNSCHEDULABLE]), PodState.UNSCHEDULABLE, id="selector-not-ours"),
    pytest.param(pod(init=[{"name": "wait-model-cache", "state": {"terminated": {"exitCode": 0}}}]),
                 PodState.STARTING, id="cache-ready-container-starting"),
])
def test_pod_state(p: dict, state: str) -> None:
    assert read_pod(p, model_label=LABEL).state == state


def test_pod_view_has_job_index_node_and_running_since() -> None:
    view = read_pod(pod("Running", containers=[{"name": "t2v", "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}}]))
    assert (view.job, view.index, view.node) == ("t2v-abc-a1", 2, "gpu-node-0")
    assert view.running_since == parse_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert read_pod(pod()).running_since is None
    assert read_pod({"metadata": {"labels": {}}}) is None  # not a Job index's pod


def test_job_event_times() -> None:
    job = {"status": {"startTime": "2026-01-02T03:04:05Z", "completionTime": "2026-01-02T03:05:05Z",
                      "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-02T03:05:06Z"}]}}
    assert event_time(job, "admitted") == 1767323045.0
    assert event_time(job, "finished") == 1767323105.0
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-02T03:05:06Z"}]}}
    assert event_time(failed, "finished") == 1767323106.0
    assert event_time({"spec": {"suspend": True}}, "admitted") is None


def test_workload_stop_gives_kueues_reason_and_time() -> None:
    wl = {"status": {"conditions": [
        {"type": "Evicted", "status": "True", "reason": "Preempted", "lastTransitionTime": "2026-01-02T03:04:05Z"},
        {"type": "Preempted", "status": "True", "reason": "InCohortReclamation",
         "lastTransitionTime": "2026-01-02T03:04:05Z"}]}}
    assert workload_stop(wl) == ("InCohortReclamation", 1767323045.0)
    assert workload_stop(None) == ("unknown", None)
