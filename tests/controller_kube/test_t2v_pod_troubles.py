"""Reading a job pod's troubles from its status (controller/kube/pods.py): pure functions, no cluster.

The statuses are the shapes a real kubelet reports (seen on the test node, tests/realnode)."""

from __future__ import annotations

import pytest

from controller.kube.pods import end_reason, start_trouble


def pod(*, waiting: dict | None = None, terminated: dict | None = None, init: bool = False,
        limit: str = "3Gi") -> dict:
    state = {"waiting": waiting} if waiting else {"terminated": terminated} if terminated else {"running": {}}
    cs = {"name": "wait-model-cache" if init else "t2v", "image": "t2v-jobimage:gone", "state": state}
    return {"metadata": {"creationTimestamp": "2026-12-04T15:00:00Z"},
            "spec": {"nodeName": "t2v-node",
                     "containers": [{"name": "t2v", "resources": {"limits": {"memory": limit}}}],
                     "initContainers": [{"name": "wait-model-cache", "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {("initContainerStatuses" if init else "containerStatuses"): [cs]}}


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
@pytest.mark.parametrize("init", [False, True], ids=["main", "init"])
def test_a_pod_that_cannot_pull_its_image_names_the_image(reason: str, init: bool) -> None:
    why = start_trouble(pod(waiting={"reason": reason, "message": 'Back-off pulling image "t2v-jobimage:gone"'},
                            init=init))
    assert why is not None and reason in why and "'t2v-jobimage:gone'" in why


@pytest.mark.parametrize("waiting", [None, {"reason": "ContainerCreating"}, {"reason": "PodInitializing"}],
                         ids=["running", "creating", "initializing"])
def test_a_pod_on_its_way_has_no_trouble(waiting: dict | None) -> None:
    assert start_trouble(pod(waiting=waiting)) is None


def test_oom_killed_names_the_limit_and_the_setting() -> None:
    why = end_reason(pod(terminated={"reason": "OOMKilled", "exitCode": 137}, limit="120Mi"))
    assert why is not None and "memory limit of 120Mi" in why and "T2V_JOB_MEMORY_LIMIT" in why


def test_other_exits_say_the_code_and_a_clean_exit_says_nothing() -> None:
    assert "exited 75 (Error)" in end_reason(pod(terminated={"reason": "Error", "exitCode": 75}))
    assert end_reason(pod(terminated={"reason": "Completed", "exitCode": 0})) is None
