"""Preemption with real pods: a CSV batch fills the GPUs, then interactive videos arrive; Kueue evicts
a batch Job, the kubelet sends its pod SIGTERM, the job image checkpoints its denoising step, and the
batch resumes later from that step. `kubectl kueue list workload` shows the waiting ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.testcluster_lib import build
from tests.plugins.realnode import RealStack
from tests.realnode.stack import NS, SMALL, all_terminal, api, job_pods, videos, wait_for, write_csv

pytestmark = [pytest.mark.realnode, pytest.mark.slow]
# Long enough per item (tens of seconds on 2 cores) to be stopped mid-denoising; 256x144 x 7 frames in
# 24 steps took a second, and the batch ended before the interactive videos arrived.
BATCH_ROW = {**SMALL, "size": "432x240", "num_frames": 19, "num_inference_steps": 40}


def kueuectl(stack: RealStack, *args: str) -> str:
    p = stack.cluster._run(build.binary("kubectl-kueue"), args, True, None)
    return p.stdout


def test_interactive_videos_preempt_a_batch_pod_which_checkpoints_and_resumes(real_stack: RealStack,
                                                                              tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "batch.csv", [f"a glacier calving, shot {i}" for i in range(16)], BATCH_ROW)
    with api(real_stack) as client:
        r = client.post("/v1/batches", files={"file": ("batch.csv", rows.read_bytes(), "text/csv")})
        assert r.status_code == 200, r.text
        batch = r.json()["id"]
        batch_ids = [v["id"] for v in client.get("/v1/videos", params={"batch_id": batch, "limit": 100}).json()["data"]]
        assert len(batch_ids) == 16

        # The batch holds the GPUs: every batch pod the queues allow Running, denoising.
        def batch_denoising():
            running = [p for p in job_pods(real_stack) if p["status"].get("phase") == "Running"]
            busy = [v for v in videos(client, batch_ids) if v["status"] == "in_progress" and v["progress"] > 0]
            return len(running) >= 3 and len(busy) >= 3 and running
        wait_for(batch_denoising, timeout=300, what="3+ batch pods denoising")

        singles = []
        for i in range(2):
            r = client.post("/v1/videos", json={"prompt": f"a hummingbird, close-up {i}", **SMALL})
            assert r.status_code == 200, r.text
            singles.append(r.json()["id"])

        # The operator's view: our workloads, the waiting ones with their positions.
        def listed():
            out = kueuectl(real_stack, "list", "workload", "-n", NS)
            pending = [line for line in out.splitlines() if "Pending" in line or "PENDING" in line]
            return out if "t2v-" in out and any(re.search(r"\s\d+\s", line) for line in pending) else None
        table = wait_for(listed, timeout=120, what="kubectl kueue list workload with a pending position", every=1)
        assert "long" in table or "short" in table, table

        ids = batch_ids + singles
        vids = wait_for(lambda: all_terminal(client, ids), timeout=1200, what="18 videos end", every=5)
        assert [v["status"] for v in vids] == ["completed"] * 18, [(v["id"], v["status"], v["error"]) for v in vids]
        for v in vids:
            events = client.get(f"/v1/videos/{v['id']}/events").json()["data"]
            assert [e["to"] for e in events].count("completed") == 1, events

        # Kueue evicted a batch Job (its pods are deleted with the suspended Job, so they leave no record);
        # its pod got SIGTERM, saved its item's denoising step, and the next pod resumed from there.
        resumed = [v for v in vids if v["id"] in batch_ids and (v.get("timings") or {}).get("resumed_at_step")]
        assert resumed, [v.get("timings") for v in vids]
        preempted = [v for v in vids if any("by Kueue" in (e["reason"] or "")
                                            for e in client.get(f"/v1/videos/{v['id']}/events").json()["data"])]
        assert preempted
