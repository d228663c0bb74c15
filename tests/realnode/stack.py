"""Small helpers for the real-node tests: the HTTP API of the deployment, kubectl views, decoding."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx

from tests.plugins.realnode import RealStack

NS = "t2v"
# Small tiny-model videos: 7 frames of 256x144 in 2 steps keep a pod's work to seconds on 2 cores.
SMALL = {"model": "tiny", "size": "256x144", "num_frames": 7, "num_inference_steps": 2}


def write_csv(path: Path, prompts: list[str], params: dict) -> Path:
    """A batch CSV: one row per prompt, the same parameters on every row."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", *params])
        w.writeheader()
        w.writerows({"prompt": p, **params} for p in prompts)
    return path


def api(stack: RealStack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30)


def kget(stack: RealStack, *args: str) -> Any:
    return json.loads(stack.cluster.kubectl("get", *args, "-o", "json").stdout)


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 2.0) -> Any:
    """Poll until check() is truthy; on time-out fail with the last value seen. The API may be away for a
    while (its pods are on the node a fault test takes down): a refused or dropped request is not an answer."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.TransportError as e:
            last = f"API unreachable: {e!r}"
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def videos(client: httpx.Client, ids: list[str]) -> list[dict]:
    out = []
    for vid in ids:
        r = client.get(f"/v1/videos/{vid}")
        r.raise_for_status()
        out.append(r.json())
    return out


def all_terminal(client: httpx.Client, ids: list[str]) -> list[dict] | None:
    vids = videos(client, ids)
    return vids if all(v["status"] in ("completed", "failed", "cancelled") for v in vids) else None


def decoded_frames(mp4: bytes) -> int:
    """Decode every frame of an MP4 (PyAV) and count them."""
    with av.open(io.BytesIO(mp4)) as f:
        return sum(1 for _ in f.decode(video=0))


def job_pods(stack: RealStack) -> list[dict]:
    return kget(stack, "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-job")["items"]


def leader_pod(stack: RealStack) -> str:
    """The controller pod holding the Lease (its identity starts with the pod's host name)."""
    holder = kget(stack, "lease", "t2v-controller", "-n", NS)["spec"]["holderIdentity"]
    pods = kget(stack, "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-controller")["items"]
    return next(p["metadata"]["name"] for p in pods if holder.startswith(p["metadata"]["name"] + "-"))
