"""The Job watch: wakes on changes, resumes from its resourceVersion, re-lists on 410 Gone.

The first test runs the watch against the real API server. The API server answers 410 only once
its watch cache has dropped the asked-for version (events evicted after 75 s in a full cache, or
a re-list), which no test can bring about in seconds; and its bookmarks come only when its cache has
seen a newer version than the watch's. So the 410 and bookmark branches of `step()` are driven by a
scripted event stream in the second test.
"""

from __future__ import annotations

import threading

import pytest

from controller.kube.api import KubeJobApi
from controller.kube.jobs import Unit, build_job, index_of, job_name
from controller.kube.watch import JobWatch
from controller.settings import ControllerSettings
from jobcontract.records import Item, Manifest
from tests.plugins.cluster import ClusterHandle


def a_job(settings: ControllerSettings, n: int) -> dict:
    vid = f"video_{n:024d}"
    item = Item(video_id=vid, index=index_of(0, 1), prompt="p", negative_prompt="", seed=1, num_frames=13,
                height=144, width=256, num_inference_steps=2, guidance_scale=4.5, fps=24, model="tiny")
    return build_job(settings, Manifest(job_name=job_name(vid, 1), items=[item]),
                     Unit(tenant="default", queue="short", priority="interactive", batch_id=None))


@pytest.mark.cluster
def test_wakes_on_changes_and_resumes_from_its_version(tmp_path, monkeypatch, test_cluster: ClusterHandle,
                                                      k8s_namespace: str) -> None:
    monkeypatch.setenv("KUBECONFIG", test_cluster.kubeconfig)
    s = ControllerSettings(data_dir=tmp_path, namespace=k8s_namespace)
    api = KubeJobApi(k8s_namespace)
    seen: list[tuple[str, str]] = []

    def watch_fn(rv: str, timeout: int):
        for e in api.watch_jobs(rv, timeout):
            seen.append((e["type"], (e["object"].get("metadata") or {}).get("name", "")))
            yield e

    wake = threading.Event()
    w = JobWatch(api.list_version, watch_fn, wake, timeout_seconds=2)  # the server ends each call at 2 s

    def step_while(action) -> int:
        got: list[int] = []
        t = threading.Thread(target=lambda: got.append(w.step()))
        t.start()
        action()
        t.join(timeout=30)
        return got[0]

    assert w.step() == 0  # nothing there: a fresh list (which wakes the loop once), then no change
    assert wake.is_set() and w.rv is not None
    wake.clear()
    first = w.rv
    name = job_name(f"video_{1:024d}", 1)
    assert step_while(lambda: api.create_job(a_job(s, 1))) >= 1
    assert wake.is_set() and int(w.rv) > int(first)
    for _ in range(10):  # let the Job controller's and Kueue's updates pass
        if w.step() == 0:
            break
    wake.clear()
    assert w.step() == 0 and not wake.is_set()  # quiet: resumed where it was, nothing new
    assert seen.count(("ADDED", name)) == 1  # each call resumed from the last version: nothing replayed
    assert step_while(lambda: api.delete_job(name)) >= 1
    assert wake.is_set() and ("DELETED", name) in seen


def ev(kind: str, rv: str) -> dict:
    return {"type": kind, "object": {"metadata": {"resourceVersion": rv}}}


def test_resumes_from_last_version_and_relists_on_gone() -> None:
    lists, calls = [], []
    script = [
        [ev("ADDED", "11"), ev("BOOKMARK", "15")],
        [ev("MODIFIED", "16")],
        [{"type": "ERROR", "object": {"code": 410, "message": "too old resource version: 16"}}],
        [],
    ]

    def list_fn() -> str:
        lists.append(1)
        return str(10 * len(lists))

    def watch_fn(rv: str, timeout: int):
        calls.append(rv)
        return iter(script[len(calls) - 1])

    wake = threading.Event()
    w = JobWatch(list_fn, watch_fn, wake, timeout_seconds=5)
    assert w.step() == 1 and wake.is_set()
    wake.clear()
    assert w.step() == 1
    w.step()  # 410: forget the version
    assert w.rv is None
    w.step()
    assert calls == ["10", "15", "16", "20"]  # resumed from the bookmark; fresh list after 410
    assert len(lists) == 2
