"""A resumable watch on the controller's Jobs that wakes the reconcile loop early.

The reconcile pass stays the truth (it lists everything); the watch only makes it react within
milliseconds instead of a resync period. It resumes from the last resourceVersion (bookmarks keep it
fresh while nothing changes) and re-lists on 410 Gone, as client-go's reflector does. It also keeps
the newest copy of each Job that changed, so the loop can follow just those between full passes
(`take_changed`) instead of listing every Job on every event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("t2v.controller")

# list_fn() -> resourceVersion of a fresh list; watch_fn(rv, timeout) -> iterable of raw events
# ({"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}).
ListFn = Callable[[], str]
WatchFn = Callable[[str, int], Iterable[dict]]


class Gone(Exception):
    """The API server no longer has our resourceVersion (410): re-list."""


class JobWatch:
    """Follows Jobs from a resourceVersion; `step()` is one watch call, `run()` loops until stopped."""

    def __init__(self, list_fn: ListFn, watch_fn: WatchFn, wake: threading.Event, *, timeout_seconds: int) -> None:
        self.list_fn, self.watch_fn, self.wake = list_fn, watch_fn, wake
        self.timeout_seconds = timeout_seconds
        self.rv: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed: dict[str, dict | None] = {}  # Job name -> newest object, None once deleted
        self._missed = True  # events may have been missed (start, re-list): only a full pass will do

    def take_changed(self) -> dict[str, dict | None] | None:
        """The Jobs changed since the last call (name -> newest object, None if deleted), or None when
        events may have been missed since (a start or re-list), so that only a full pass is safe."""
        with self._lock:
            changed, missed = self._changed, self._missed
            self._changed, self._missed = {}, False
        return None if missed else changed

    def step(self) -> int:
        """One watch call until its server-side timeout; returns how many changes woke the loop."""
        if self.rv is None:
            with self._lock:
                self._missed = True
            self.rv = self.list_fn()
            self.wake.set()  # things may have changed while we were not watching
        changes = 0
        try:
            for ev in self.watch_fn(self.rv, self.timeout_seconds):
                kind, obj = ev.get("type"), ev.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "resourceVersion too old"))
                    log.warning("watch error event", extra={"object": obj})
                    continue
                meta = obj.get("metadata") or {}
                self.rv = meta.get("resourceVersion") or self.rv
                if kind != "BOOKMARK":
                    changes += 1
                    if meta.get("name"):
                        with self._lock:
                            self._changed[meta["name"]] = None if kind == "DELETED" else obj
                    self.wake.set()
        except Gone as e:
            log.info("watch expired; re-listing", extra={"reason": str(e)})
            self.rv = None
        return changes

    def run(self) -> None:
        """Watch until `stop()`; errors back off briefly and re-list."""
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - API server restart etc.: re-list after a pause
                log.exception("job watch failed")
                self.rv = None
                self._stop.wait(2.0)

    def stop(self) -> None:
        self._stop.set()
