"""The Job builder and the Job-state reader: pure functions over plain dicts."""

from __future__ import annotations

import pytest

from controller.kube.jobs import Unit, build_job, cluster_queue, finished_indexes, index_of, job_name, read_state
from controller.settings import ControllerSettings
from jobcontract.records import Item, Manifest
from tests.support.kueue_quota import max_gpus


def manifest(n: int, per_pod: int = 4) -> Manifest:
    items = [Item(video_id=f"video_{i:024d}", index=index_of(i, per_pod), prompt="p", negative_prompt="", seed=1,
                  num_frames=13, height=144, width=256, num_inference_steps=2, guidance_scale=4.5, fps=24,
                  model="tiny") for i in range(n)]
    return Manifest(job_name=job_name(items[0].video_id, 1), items=items)


def test_job_is_suspended_indexed_under_kueue_with_per_index_retries(tmp_path) -> None:
    s = ControllerSettings(data_dir=tmp_path)
    job = build_job(s, manifest(20), Unit(tenant="acme", queue="long", priority="batch", batch_id="batch_x"))
    spec, labels = job["spec"], job["metadata"]["labels"]
    assert spec["suspend"] is True and spec["completionMode"] == "Indexed"
    assert spec["completions"] == 5 and spec["parallelism"] == 4  # 8 GPUs / 2 per pod
    assert spec["maxFailedIndexes"] >= 1 and spec["backoffLimitPerIndex"] == 2
    assert labels["kueue.x-k8s.io/queue-name"] == "acme-long"  # the tenant's own LocalQueue
    assert labels["kueue.x-k8s.io/priority-class"] == "t2v-batch"
    assert labels["t2v.io/batch-id"] == "batch_x" and labels["t2v.io/tenant"] == "acme"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore" and rules[1]["onExitCodes"]["values"] == [42, 78]
    assert job["metadata"]["name"] == "t2v-000000000000000000000000-a1"
    assert len(job["metadata"]["name"]) <= 63


def test_single_video_job_names_its_video(tmp_path) -> None:
    job = build_job(ControllerSettings(data_dir=tmp_path), manifest(1),
                    Unit(tenant="default", queue="short", priority="interactive", batch_id=None))
    assert job["metadata"]["labels"]["t2v.io/video-id"] == "video_" + "0" * 24
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "t2v-interactive"
    assert job["spec"]["maxFailedIndexes"] == 0


@pytest.mark.parametrize("queue", ["short", "long"])
def test_parallelism_stays_within_what_the_queue_can_ever_hold(tmp_path, queue: str) -> None:
    """A Job asking for more GPUs than its ClusterQueue can hold with what it may borrow would never
    be admitted; each queue may borrow all of the other's, so a wide batch Job takes the whole node."""
    settings = ControllerSettings(data_dir=tmp_path)
    job = build_job(settings, manifest(20), Unit(tenant="default", queue=queue, priority="batch", batch_id="batch_x"))
    assert job["spec"]["parallelism"] == max_gpus(cluster_queue(settings, queue)) // settings.gpus_per_pod == 4
    narrow = settings.model_copy(update={f"{queue}_queue_max_gpus": 6})  # e.g. a lendingLimit of 2 elsewhere
    job = build_job(narrow, manifest(20), Unit(tenant="default", queue=queue, priority="batch", batch_id="batch_x"))
    assert job["spec"]["parallelism"] == 3


@pytest.mark.parametrize(("job", "finished", "failed", "running", "suspended"), [
    pytest.param({"spec": {"suspend": True}}, False, False, False, True, id="waiting"),
    pytest.param({"spec": {"suspend": False}, "status": {"active": 2}}, False, False, True, False, id="running"),
    pytest.param({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, True, False, False, False,
                 id="complete"),
    pytest.param({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}},
                 True, True, False, False, id="failed"),
])
def test_read_state(job, finished, failed, running, suspended) -> None:
    st = read_state(job)
    assert (st.finished, st.failed, st.running, st.suspended) == (finished, failed, running, suspended)


def test_pod_waits_for_each_models_ready_marker(tmp_path) -> None:
    job = build_job(ControllerSettings(data_dir=tmp_path), manifest(2),
                    Unit(tenant="default", queue="short", priority="interactive", batch_id=None))
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert "[ -f /models/tiny/READY ]" in init["command"][2]
    assert init["volumeMounts"][0]["readOnly"] is True


@pytest.mark.parametrize(("conds", "want"), [
    pytest.param([], None, id="nothing"),
    pytest.param([{"type": "Evicted", "status": "True", "reason": "PodsReadyTimeout", "message": "pods not ready"}],
                 "evicted by Kueue: PodsReadyTimeout: pods not ready", id="evicted"),
    pytest.param([{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                   "message": "insufficient unused quota for nvidia.com/gpu in flavor h100"}],
                 "waiting for Kueue: insufficient unused quota for nvidia.com/gpu in flavor h100", id="waiting"),
])
def test_workload_why(conds, want) -> None:
    from controller.kube.jobs import workload_why

    assert workload_why({"status": {"conditions": conds}}) == want


@pytest.mark.parametrize(("status", "ended"), [
    pytest.param({}, set(), id="none-yet"),
    pytest.param({"completedIndexes": "0,2-4"}, {0, 2, 3, 4}, id="ranges"),
    pytest.param({"completedIndexes": "0,2-4", "failedIndexes": "1"}, {0, 1, 2, 3, 4}, id="failed-count-too"),
])
def test_finished_indexes_read_the_jobs_index_lists(status: dict, ended: set[int]) -> None:
    assert finished_indexes({"status": status}) == ended


def test_the_default_tenant_and_tenant_queues_off_use_the_shipped_local_queues() -> None:
    s = ControllerSettings()
    unit = Unit(tenant="default", queue="short", priority="interactive", batch_id=None)
    assert build_job(s, manifest(1), unit)["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "short"
    off = s.model_copy(update={"tenant_queues": False})
    unit = Unit(tenant="acme", queue="long", priority="batch", batch_id=None)
    assert build_job(off, manifest(1), unit)["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "long"


@pytest.mark.parametrize(("request_", "limit", "ok"), [("256Mi", "3Gi", True), ("64Gi", "96Gi", True),
                                                       ("256Mi", "120Mi", False), ("1Gi", "1000M", False),
                                                       ("lots", "1Gi", False)])
def test_a_job_memory_request_above_its_limit_is_refused_at_start(request_: str, limit: str, ok: bool) -> None:
    """The API server answers such a Job with 422 on every pass, so its videos would wait for ever."""
    from pydantic import ValidationError

    from controller.settings import ControllerSettings

    if ok:
        ControllerSettings(job_memory_request=request_, job_memory_limit=limit)
    else:
        with pytest.raises(ValidationError, match="T2V_JOB_MEMORY_"):
            ControllerSettings(job_memory_request=request_, job_memory_limit=limit)
