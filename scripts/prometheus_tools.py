"""Prometheus's own tools for the monitoring tests (manifests/components/monitoring), from the Go module proxy.

- `promtool`, built from source with the same wrapper-module approach as the test control plane
  (scripts/testcluster_lib/build.py): a small generated module requires
  github.com/prometheus/prometheus at a pinned version and builds `cmd/promtool`. The binary lands
  in its own cache folder and takes its own lock, so it never waits behind (or rebuilds) the
  control plane.
- The Prometheus Operator's CRDs (PodMonitor, PrometheusRule), as its Go module ships them, so the
  test control plane can validate the component's objects.

    python -m scripts.prometheus_tools build    # no-op when built
    python -m scripts.prometheus_tools which    # print promtool's path
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from scripts.testcluster_lib import build as b

# Prometheus v3.x is published to the module proxy as v0.3XX.Y (v0.316.0 = Prometheus 3.16.0).
PROMETHEUS_VERSION = "v0.316.0"
# promtool links every service-discovery plugin by default (AWS, Azure, GCE, ...); the rule checker
# and its unit tests need none of them, and leaving them out halves the build.
BUILD_TAGS = "remove_all_sd"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"

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


def operator_crds(*kinds: str) -> list[Path]:
    """The Prometheus Operator's CRD files for `kinds` (plural, e.g. `podmonitors`), from its Go module."""
    out = subprocess.run([b.GO, "mod", "download", "-json", f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION}"],
                         capture_output=True, text=True, check=True, timeout=600)
    folder = Path(json.loads(out.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    return [folder / f"monitoring.coreos.com_{kind}.yaml" for kind in kinds]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prometheus_tools", description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=["build", "which"])
    args = p.parse_args(argv)
    path = build() if args.cmd == "build" else binary()
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
