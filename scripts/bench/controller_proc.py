#!/usr/bin/env python3
"""What `t2v controller` runs (controller.main.build_controller, then run_forever), plus counters.

The cluster benchmarks run the controller as a process of its own so its CPU time is its own. It
writes to $T2V_BENCH_STATS (on SIGTERM, after the current pass) and to <that>.snapshot.json (on
SIGUSR1): CPU seconds so far (time.process_time, every thread), its API server requests by verb
and resource, and each reconcile pass (wall-clock end, seconds, CPU seconds).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from controller.main import build_controller  # noqa: E402
from core import log  # noqa: E402
from controller.settings import ControllerSettings  # noqa: E402


def request_kind(method: str, url: str) -> str:
    """'LIST jobs', 'WATCH jobs', 'POST jobs', 'GET localqueues/pendingworkloads', ... from one request."""
    parts = urlsplit(url)
    path = re.sub(r"/namespaces/[^/]+", "", parts.path).strip("/").split("/")
    tokens = path[2:] if path[0] == "api" else path[3:]  # after /api/v1 or /apis/<group>/<version>
    resource = tokens[0] if tokens else parts.path
    if len(tokens) > 2:
        resource += "/" + tokens[2]
    verb = method
    if method == "GET" and len(tokens) == 1:
        verb = "WATCH" if parse_qs(parts.query).get("watch", [""])[0].lower() == "true" else "LIST"
    return f"{verb} {resource}"


def main() -> int:
    out = Path(os.environ["T2V_BENCH_STATS"])
    settings = ControllerSettings()
    log.setup(level=settings.log_level, fmt=settings.log_format)
    requests: Counter[str] = Counter()

    from kubernetes.client import rest

    plain = rest.RESTClientObject.request

    def counted(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        requests[request_kind(method, url)] += 1
        return plain(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = counted
    ctl = build_controller(settings)
    passes: list[tuple[float, float, float, int]] = []  # (end, seconds, CPU seconds, Jobs followed or -1: all)
    # The loop's step (controller/kube/controller.py: `_pass`, or `reconcile_once` in older versions).
    attr = "_pass" if hasattr(ctl, "_pass") else "reconcile_once"
    step = getattr(ctl, attr)

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return step(*args, **kwargs)
        finally:
            changed = args[0] if args else None
            passes.append((time.time(), time.perf_counter() - t0, time.process_time() - c0,
                           -1 if changed is None else len(changed)))

    setattr(ctl, attr, timed)
    creates: list[float] = []  # seconds of each Job POST (API server + Kueue's webhooks)
    post = ctl.api.create_job
    def timed_create(body: dict) -> bool:
        t0 = time.perf_counter()
        try:
            return post(body)
        finally:
            creates.append(time.perf_counter() - t0)

    ctl.api.create_job = timed_create

    def dump(path: Path) -> None:
        path.write_text(json.dumps({"cpu_seconds": time.process_time(), "at": time.time(),
                                    "requests": dict(requests), "passes": list(passes),
                                    "creates": list(creates)}))

    # SIGUSR1: a snapshot (the benchmark takes one before it submits); SIGTERM: stop, then the totals.
    signal.signal(signal.SIGUSR1, lambda *_: dump(out.with_suffix(".snapshot.json")))
    signal.signal(signal.SIGTERM, lambda *_: ctl.stop())
    ctl.run_forever()
    dump(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
