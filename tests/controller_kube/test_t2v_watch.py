"""The Job watch resumes from its resourceVersion, ignores bookmarks for waking, re-lists on 410."""

from __future__ import annotations

import threading

from controller.kube.watch import JobWatch


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
