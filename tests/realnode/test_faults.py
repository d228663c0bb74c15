"""Faults only a real node has, on the deployed stack: each affected video resumes or ends with a
reason the user can read, nothing waits forever, nothing runs twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scripts.testcluster_lib import cluster
from tests.plugins.realnode import RealStack
from tests.realnode.stack import NS, SMALL, all_terminal, api, job_pods, kget, wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.slow]
NODE = "t2v-node"


@contextmanager
def controller_env(stack: RealStack, **env: str) -> Iterator[None]:
    """The controller Deployment with these T2V_* settings for the block, then as it was."""
    def set_env(wanted: dict[str, str | None]) -> None:
        pairs = [f"{k}={v}" if v is not None else f"{k}-" for k, v in wanted.items()]
        stack.cluster.kubectl("-n", NS, "set", "env", "deployment/t2v-controller", *pairs)
        stack.cluster.kubectl("-n", NS, "rollout", "status", "deployment/t2v-controller", "--timeout=180s")
        # The rollout is done when the new pod is ready, but the old one may still lead while it shuts
        # down, and it dispatches with the old settings (the memory test once got the 3Gi default).
        wait_for(lambda: leader_env(stack, list(wanted)) == wanted, timeout=120,
                 what=f"a controller with {pairs} holding the Lease", every=1)

    containers = kget(stack, "deployment", "t2v-controller", "-n", NS)["spec"]["template"]["spec"]["containers"]
    have = {e["name"]: e.get("value") for e in containers[0].get("env", [])}
    before = {k: have.get(k) for k in env}
    set_env(dict(env))
    try:
        yield
    finally:
        set_env(before)


def leader_env(stack: RealStack, names: list[str]) -> dict[str, str | None] | None:
    """These variables as the controller pod holding the Lease has them (None: not set); None while no
    pod holds it (released, or its holder gone)."""
    holder = kget(stack, "lease", "t2v-controller", "-n", NS)["spec"].get("holderIdentity") or ""
    for pod in kget(stack, "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-controller")["items"]:
        if holder.startswith(pod["metadata"]["name"] + "-"):
            have = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
            return {k: have.get(k) for k in names}
    return None


def submit(stack: RealStack, prompt: str, **extra: object) -> str:
    with api(stack) as client:
        r = client.post("/v1/videos", json={"prompt": prompt, **SMALL, **extra})
        assert r.status_code == 200, r.text
        return r.json()["id"]


def page_of(stack: RealStack, video_id: str) -> str:
    with api(stack) as client:
        return client.get(f"/ui/videos/{video_id}").text


def test_an_image_that_cannot_be_pulled_fails_the_video_with_the_reason(real_stack: RealStack) -> None:
    with controller_env(real_stack, T2V_JOB_IMAGE="t2v-jobimage:does-not-exist"):
        vid = submit(real_stack, "a lantern in fog")
        with api(real_stack) as client:
            (v,) = wait_for(lambda: all_terminal(client, [vid]), timeout=300, what="the video ends", every=3)
    assert v["status"] == "failed", v
    assert "t2v-jobimage:does-not-exist" in v["error"]["message"], v["error"]
    assert "pull" in v["error"]["message"].lower(), v["error"]
    assert "t2v-jobimage:does-not-exist" in page_of(real_stack, vid)


def test_a_pod_killed_by_its_memory_limit_fails_the_video_saying_so(real_stack: RealStack) -> None:
    # One pod, one attempt: a pod over its limit is killed the same way every time.
    with controller_env(real_stack, T2V_JOB_MEMORY_LIMIT="200Mi", T2V_JOB_MEMORY_REQUEST="100Mi",
                        T2V_BACKOFF_LIMIT_PER_INDEX="0",
                        T2V_MAX_ATTEMPTS="1"):
        vid = submit(real_stack, "a whale under ice")
        with api(real_stack) as client:
            (v,) = wait_for(lambda: all_terminal(client, [vid]), timeout=600, what="the video ends", every=3)
    assert v["status"] == "failed", v
    assert "memory" in v["error"]["message"].lower() and "200Mi" in v["error"]["message"], v["error"]
    assert "200Mi" in page_of(real_stack, vid)


def test_the_kubelet_stopped_mid_run_and_started_again(real_stack: RealStack) -> None:
    state = Path(real_stack.cluster.state_dir)
    ids = [submit(real_stack, f"a city at night, take {i}", num_inference_steps=40) for i in range(2)]
    wait_for(lambda: [p for p in job_pods(real_stack) if p["status"].get("phase") == "Running"
                      and any(i in json.dumps(p["metadata"]["labels"]) for i in ids)],
             timeout=300, what="a job pod of these videos Running")
    cluster.stop(state, ["kubelet"])
    try:
        def not_ready():
            conds = kget(real_stack, "node", NODE)["status"]["conditions"]
            return any(c["type"] == "Ready" and c["status"] != "True" for c in conds)
        wait_for(not_ready, timeout=120, what="the node NotReady")
    finally:
        cluster.restart(state, "kubelet")
    with api(real_stack) as client:
        vids = wait_for(lambda: all_terminal(client, ids), timeout=600, what="both videos end", every=5)
        assert [v["status"] for v in vids] == ["completed"] * 2, vids
        for v in vids:
            events = client.get(f"/v1/videos/{v['id']}/events").json()["data"]
            assert [e["to"] for e in events].count("completed") == 1, events
