"""The kube backend's reading of a Job (conditions, indexes, pods, Kueue's Workload) into one phase
per video, the input of controller/table.py: plain dicts, no cluster."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller.kube.backend import KubeBackend
from controller.kube.pods import PodState, PodView
from controller.settings import ControllerSettings
from controller.table import Phase

NAME = "t2v-a-a1"
PREEMPTED = {"metadata": {"name": "job-t2v-a-a1"}, "status": {"conditions": [
    {"type": "Preempted", "status": "True", "reason": "InCohortReclamation", "message": "to make room",
     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


class FakeApi:
    def job_workloads(self) -> dict[str, dict]:
        return {NAME: PREEMPTED}

    def failed_pod_reasons(self, job: str) -> dict[int, str]:
        return {1: "the job pod was killed at its memory limit"}

    def delete_job(self, name: str) -> None:
        pass


def job(*, suspend: bool = False, conditions: tuple[str, ...] = (), **status) -> dict:
    conds = [{"type": c, "status": "True", "reason": c, "message": "m"} for c in conditions]
    return {"metadata": {"name": NAME}, "spec": {"suspend": suspend}, "status": {"conditions": conds, **status}}


def pod(index: int, *, trouble: str | None = None) -> PodView:
    return PodView(job=NAME, index=index, node="node-1", state=PodState.RUNNING, running_since=100.0,
                   trouble=trouble, created="2020-01-01T00:00:00+00:00")


# id -> (Job or None, pods, statuses of the videos at indexes 0 and 1, expected (phase, reason start) each)
CASES = {
    "no Job: missing": (None, [], ["queued", "queued"],
                        [(Phase.missing, "its Job t2v-a-a1 disappeared")] * 2),
    "suspended, never admitted: waiting": (job(suspend=True), [], ["queued", "queued"],
                                           [(Phase.waiting, "waiting for Kueue admission")] * 2),
    "suspended after admission: waiting, with Kueue's words": (
        job(suspend=True), [], ["in_progress", "in_progress"],
        [(Phase.waiting, "preempted by Kueue: InCohortReclamation: to make room; queued again")] * 2),
    "unsuspended, no pod yet: pending": (job(), [], ["queued", "queued"], [(Phase.pending, "admitted")] * 2),
    "pods active: running": (job(active=2), [pod(0), pod(1)], ["queued", "in_progress"],
                             [(Phase.running, "admitted by Kueue; running in Job t2v-a-a1")] * 2),
    "a pod that cannot start past the grace period: stuck": (
        job(active=2), [pod(0, trouble="ImagePullBackOff"), pod(1)], ["in_progress", "in_progress"],
        [(Phase.stuck, "ImagePullBackOff")] * 2),
    "one index completed while the other runs": (
        job(active=1, completedIndexes="0"), [pod(1)], ["in_progress", "in_progress"],
        [(Phase.ended, "index 0 of Job t2v-a-a1 ended"), (Phase.running, "admitted by Kueue")]),
    "one index failed while the other runs: the pod's ending": (
        job(active=1, failedIndexes="1"), [pod(0)], ["in_progress", "in_progress"],
        [(Phase.running, "admitted by Kueue"), (Phase.ended, "the job pod was killed at its memory limit")]),
    "Complete: ended": (job(conditions=("Complete",)), [], ["in_progress", "cancelled"],
                        [(Phase.ended, "job complete")] * 2),
    "Failed: ended, each index with its pod's ending": (
        job(conditions=("Failed",)), [], ["in_progress", "in_progress"],
        [(Phase.ended, "job failed: Failed: m"), (Phase.ended, "the job pod was killed at its memory limit")]),
}


@pytest.mark.parametrize(("body", "pods", "statuses", "expected"), CASES.values(), ids=CASES.keys())
def test_job_state_to_phase(tmp_path, body, pods, statuses, expected) -> None:
    backend = KubeBackend(ControllerSettings(data_dir=tmp_path), store=None, api=FakeApi())
    backend.jobs = {NAME: body} if body else {}
    backend.pods = {(NAME, p.index): p for p in pods}
    backend._indexes[NAME] = {"video_0": 0, "video_1": 1}  # as its manifest says
    videos = [SimpleNamespace(id=f"video_{i}", status=s) for i, s in enumerate(statuses)]
    view = backend.observe(NAME, videos)
    got = [(view.seen[v.id].phase, view.seen[v.id].reason) for v in videos]
    assert [phase for phase, _ in got] == [phase for phase, _ in expected]
    for (_, reason), (_, start) in zip(got, expected, strict=True):
        assert reason.startswith(start), reason


def test_a_preempted_job_names_kueues_reason_for_the_metric(tmp_path) -> None:
    backend = KubeBackend(ControllerSettings(data_dir=tmp_path), store=None, api=FakeApi())
    backend.jobs = {NAME: job(suspend=True)}
    view = backend.observe(NAME, [SimpleNamespace(id="video_0", status="in_progress")])
    assert view.seen["video_0"].cause == "InCohortReclamation" and view.stopped_at is not None
