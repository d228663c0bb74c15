"""The Job watch hands the loop the Jobs that changed, or says a full pass is needed (start, 410)."""

from __future__ import annotations

import threading

from controller.kube.watch import JobWatch


def ev(kind: str, name: str, rv: str, **status: object) -> dict:
    return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": rv}, "status": status}}


def test_changed_jobs_newest_copy_deleted_as_none_and_full_pass_after_a_relist() -> None:
    script = [
        [ev("ADDED", "a", "11"), ev("MODIFIED", "a", "12", active=1), ev("ADDED", "b", "13"),
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "14"}}}],
        [ev("DELETED", "b", "15")],
        [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
        [ev("MODIFIED", "a", "31", succeeded=1)],
    ]
    calls: list[str] = []

    def watch_fn(rv: str, timeout: int):
        calls.append(rv)
        return iter(script[len(calls) - 1])

    w = JobWatch(lambda: "10", watch_fn, threading.Event(), timeout_seconds=5)
    w.step()
    assert w.take_changed() is None  # just listed: events before the list are unknown
    w.step()
    w.step()  # 410: the next step re-lists
    assert w.take_changed() == {"b": None}  # deleted since the last take
    w.list_fn = lambda: "30"
    w.step()
    assert w.take_changed() is None  # re-listed: a full pass must look at everything again
    assert w.take_changed() == {}
    script.append([ev("MODIFIED", "a", "32", succeeded=1, ready=0)])
    w.step()
    assert w.take_changed() == {"a": script[-1][0]["object"]}  # the newest copy only
