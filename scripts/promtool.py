"""Build Prometheus's `promtool` from source, for the monitoring tests (manifests/components/monitoring).

The same wrapper-module approach as the test control plane (scripts/testcluster_lib/build.py): a
small generated module requires github.com/prometheus/prometheus at a pinned version and builds
`cmd/promtool` with Go from the module proxy. The binary lands in its own cache folder and takes
its own lock, so it never waits behind (or rebuilds) the control plane.

    python -m scripts.promtool build    # no-op when built
    python -m scripts.promtool which    # print the path
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from scripts.testcluster_lib import build as b

# Prometheus v3.x is published to the module proxy as v0.3XX.Y (v0.316.0 = Prometheus 3.16.0).
PROMETHEUS_VERSION = "v0.316.0"
# promtool links every service-discovery plugin by default (AWS, Azure, GCE, ...); the rule checker
# and its unit tests need none of them, and leaving them out halves the build.
BUILD_TAGS = "remove_all_sd"

WRAPPER = b.Wrapper(
    name="prometheus",
    module="github.com/prometheus/prometheus",
    version=PROMETHEUS_VERSION,
    binaries={"promtool": "github.com/prometheus/prometheus/cmd/promtool"},
)


def out_dir() -> Path:
    return b.cache_root() / "bin" / f"prometheus-{PROMETHEUS_VERSION}"


def binary() -> Path:
    """Path of the built promtool (it may not exist yet)."""
    return out_dir() / "promtool"


def build() -> Path:
    """Build promtool unless the cache has it; sets GOFLAGS for this process (run it as its own process)."""
    if binary().is_file():
        return binary()
    b.cache_root().mkdir(parents=True, exist_ok=True)
    with open(b.cache_root() / "promtool.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("promtool: waiting for another build to finish", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if binary().is_file():
            return binary()
        os.environ["GOFLAGS"] = f"-mod=mod -tags={BUILD_TAGS}"
        log_path = b.cache_root() / "promtool-build.log"
        print(f"promtool: building Prometheus {PROMETHEUS_VERSION} cmd/promtool into {out_dir()} "
              f"(log: {log_path})", file=sys.stderr)
        work = b.cache_root() / "work-promtool"
        work.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            b.build_wrapper(WRAPPER, work, out_dir(), log)
    return binary()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="promtool", description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=["build", "which"])
    args = p.parse_args(argv)
    path = build() if args.cmd == "build" else binary()
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
