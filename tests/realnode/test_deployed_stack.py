"""t2v installed from its manifests on a real kubelet node, used as a person would use it.

kueue/ and manifests/overlays/testnode are applied by `scripts/testcluster deploy`; PostgreSQL, MinIO,
two webapp replicas, two controllers on one Lease and the model-cache DaemonSet run as real containers
of images built here; every video is a real pod of the job image on the node with 8 fake GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugins.realnode import RealStack
from tests.realnode.stack import (NS, SMALL, all_terminal, api, decoded_frames, job_pods, kget, leader_pod, wait_for,
                                  write_csv)

pytestmark = [pytest.mark.realnode, pytest.mark.slow]
NODE = "t2v-node"


def test_the_model_cache_synced_tiny_and_labelled_the_node(real_stack: RealStack) -> None:
    node = kget(real_stack, "node", NODE)
    assert node["metadata"]["labels"].get("t2v.io/model-cache-ready") == "true"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    ds = kget(real_stack, "daemonset", "t2v-model-cache", "-n", NS)["status"]
    assert ds["numberReady"] == 1, ds


def test_every_webapp_replica_refuses_an_over_limit_prompt_with_the_published_tokenizer(
        real_stack: RealStack) -> None:
    """The webapp pods have no weights: they count a prompt's T5 tokens with the tokenizer.json that the model
    cache published to MinIO (`t2v model publish`), so the pod's refusal comes at submission, as a 400."""
    over = {**SMALL, "prompt": " ".join(["fox"] * 300)}  # 1,199 characters, over 256 tokens
    with api(real_stack) as client:
        newest = client.get("/v1/videos", params={"limit": 1}).json()["data"]
    for _ in range(4):  # a connection each: kube-proxy picks a replica per connection
        with api(real_stack) as client:
            r = client.post("/v1/videos", json=over)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "prompt" and "tokens" in r.json()["error"]["message"]
    with api(real_stack) as client:
        assert client.get("/v1/videos", params={"limit": 1}).json()["data"] == newest  # nothing queued


def test_six_videos_and_a_csv_by_api_and_cli_survive_a_webapp_pod_and_the_leader_dying(
        real_stack: RealStack, tmp_path: Path) -> None:
    with api(real_stack) as client:
        ids = []
        for i in range(3):
            r = client.post("/v1/videos", json={"prompt": f"a paper boat on a pond, take {i}", **SMALL})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        for i in range(3):
            p = real_stack.cli("submit", f"a kite over a beach, take {i}", "--model", "tiny", "--size", "256x144",
                               "--frames", "7", "--steps", "2", "--json")
            assert p.returncode == 0, p.stderr
            ids.append(json.loads(p.stdout)["id"])
        rows = write_csv(tmp_path / "prompts.csv", [f"a train crossing a bridge, row {i}" for i in range(8)], SMALL)
        p = real_stack.cli("batch", str(rows), "--json")
        assert p.returncode == 0, p.stderr
        batch_id = json.loads(p.stdout)["id"]
        r = client.get("/v1/videos", params={"batch_id": batch_id, "limit": 100})
        ids += [v["id"] for v in r.json()["data"]]
        assert len(ids) == 14

        # Mid-run: one webapp pod and the controller holding the Lease are deleted.
        wait_for(lambda: [p for p in job_pods(real_stack) if p["status"].get("phase") == "Running"],
                 timeout=300, what="a job pod Running")
        webapp = kget(real_stack, "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-webapp")["items"][0]
        real_stack.cluster.kubectl("delete", "pod", "-n", NS, webapp["metadata"]["name"], "--wait=false")
        real_stack.cluster.kubectl("delete", "pod", "-n", NS, leader_pod(real_stack), "--wait=false")

        vids = wait_for(lambda: all_terminal(client, ids), timeout=900, what="14 videos terminal", every=5)
        assert [v["status"] for v in vids] == ["completed"] * 14, [(v["id"], v["status"], v["error"]) for v in vids]

        # Every video completed exactly once: one completion event, one Job with one succeeded pod per index.
        for v in vids:
            events = client.get(f"/v1/videos/{v['id']}/events").json()["data"]
            assert [e["to"] for e in events].count("completed") == 1, events
        pods = job_pods(real_stack)
        assert {p["spec"]["nodeName"] for p in pods} == {NODE}
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"t2v-jobimage:local"}
        succeeded = [p for p in pods if p["status"]["phase"] == "Succeeded"]
        keys = [(p["metadata"]["labels"]["batch.kubernetes.io/job-name"],
                 p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]) for p in succeeded]
        assert len(keys) == len(set(keys)), keys  # no index ran to success twice
        assert len(keys) == 6 + 2  # 6 single videos + the CSV as 2 pods of 4 (T2V_ITEMS_PER_POD)

        # Every MP4 through the API, decoded frame by frame; the CLI downloads one too.
        for v in vids:
            content = client.get(f"/v1/videos/{v['id']}/content")
            assert content.status_code == 200
            assert decoded_frames(content.content) == 7
        out = tmp_path / "one.mp4"
        p = real_stack.cli("download", ids[3], "-o", str(out))
        assert p.returncode == 0, p.stderr
        assert decoded_frames(out.read_bytes()) == 7
