"""Build the pinned control-plane binaries from source through generated wrapper modules.

Upstream modules such as k8s.io/kubernetes replace their staging modules with
local paths, so `go install pkg@version` refuses them; a small wrapper module
requires the upstream module and points every such replace at its published twin.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GO = shutil.which("go") or "/usr/local/go/bin/go"

K8S_VERSION = "v1.36.3"
K8S_STAGING_VERSION = "v0.36.3"
ETCD_VERSION = "v3.6.16"
KUEUE_VERSION = "v0.19.2"
KWOK_VERSION = "v0.8.0"
COREDNS_VERSION = "v1.14.7"
# MinIO publishes no semver tags on the module proxy; pin the pseudo-version of a release commit.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


@dataclass(frozen=True)
class Wrapper:
    """One generated module that builds a few binaries of one upstream module."""

    name: str
    module: str
    version: str
    binaries: dict[str, str]  # output name -> package path
    staging_version: str | None = None  # replace ./staging paths with this version
    ldflags: str = ""
    main_go: str | None = None  # for upstreams whose main package cannot be built directly
    extra_require: dict[str, str] = field(default_factory=dict)
    sources: Path | None = None  # a folder of our own Go packages (no upstream module to require)


def _k8s_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


ETCD_MAIN = """// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3 at a pinned version.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""

WRAPPERS = [
    Wrapper(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binaries={"etcd": "."},
        main_go=ETCD_MAIN,
    ),
    Wrapper(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=K8S_VERSION,
        staging_version=K8S_STAGING_VERSION,
        ldflags=_k8s_ldflags(),
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            # The real test node (scripts/testcluster up --node): from the same source as the apiserver.
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
    ),
    Wrapper(
        name="kueue",
        module="sigs.k8s.io/kueue",
        version=KUEUE_VERSION,
        binaries={
            "kueue": "sigs.k8s.io/kueue/cmd/kueue",
            "kubectl-kueue": "sigs.k8s.io/kueue/cmd/kueuectl",
        },
    ),
    Wrapper(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=KWOK_VERSION,
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ),
    Wrapper(
        name="coredns",
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        binaries={"coredns": "github.com/coredns/coredns"},
    ),
    # The test node's fake GPU device plugin and its pod sandbox (pause) program, from this repo.
    Wrapper(
        name="nodetools",
        module="t2v.local/testcluster/nodetools",
        version="local",
        binaries={"fakegpu": "./fakegpu", "pause": "./pause"},
        sources=Path(__file__).resolve().parent / "nodetools",
        extra_require={"k8s.io/kubelet": K8S_STAGING_VERSION},
    ),
    Wrapper(
        name="minio",
        module="github.com/minio/minio",
        version=MINIO_VERSION,
        binaries={"minio": "github.com/minio/minio"},
    ),
]

COMPONENTS = {b: w for w in WRAPPERS for b in w.binaries}


def cache_root() -> Path:
    """The cache folder outside the repo; T2V_CACHE_DIR overrides ~/.cache/t2v."""
    base = os.environ.get("T2V_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "t2v"
    )
    return Path(base)


def versions_tag() -> str:
    return f"k8s-{K8S_VERSION}_etcd-{ETCD_VERSION}_kueue-{KUEUE_VERSION}_kwok-{KWOK_VERSION}_minio-{MINIO_VERSION[-12:]}"


def nodetools_tag() -> str:
    """A hash of our own Go sources: a changed device plugin or pause program is rebuilt."""
    import hashlib  # noqa: PLC0415

    h = hashlib.sha256()
    for w in WRAPPERS:
        if w.sources:
            for f in sorted(w.sources.rglob("*.go")):
                h.update(f.relative_to(w.sources).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def bin_dir() -> Path:
    return cache_root() / "bin" / versions_tag()


def _out_dir(w: Wrapper) -> Path:
    return cache_root() / "bin" / f"nodetools-{nodetools_tag()}" if w.sources else bin_dir()


def binary(name: str) -> Path:
    """Path of one built component (it may not exist yet)."""
    if name not in COMPONENTS:
        raise SystemExit(f"unknown component {name!r}; known: {', '.join(sorted(COMPONENTS))}")
    return _out_dir(COMPONENTS[name]) / name


def missing() -> list[str]:
    return [b for b in COMPONENTS if not binary(b).is_file()]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(GO).parent}:{env.get('PATH', '')}"
    env.setdefault("GOFLAGS", "-mod=mod")
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _run(cmd: list[str], cwd: Path, log) -> None:
    log.write(f"$ {' '.join(cmd)}  (in {cwd})\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=cwd, env=_go_env(), stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"build step failed ({proc.returncode}): {' '.join(cmd)}; see {log.name}")


def _upstream_replaces(w: Wrapper, wdir: Path, log) -> list[str]:
    """Replace lines for the wrapper: staging paths become published versions, others copied."""
    out = subprocess.run(
        [GO, "mod", "download", "-json", f"{w.module}@{w.version}"],
        cwd=wdir, env=_go_env(), capture_output=True, text=True,
    )
    if out.returncode != 0:
        log.write(out.stdout + out.stderr)
        raise SystemExit(f"cannot download {w.module}@{w.version}: {out.stderr.strip() or out.stdout.strip()}")
    gomod = Path(json.loads(out.stdout)["GoMod"]).read_text()
    lines: list[str] = []
    body = []
    for block in re.findall(r"^replace\s*\((.*?)^\)", gomod, flags=re.S | re.M):
        body += block.splitlines()
    body += [m for m in re.findall(r"^replace\s+([^(].*)$", gomod, flags=re.M)]
    for raw in body:
        line = raw.split("//")[0].strip()
        if "=>" not in line:
            continue
        left, right = (s.strip() for s in line.split("=>"))
        target = right.split()
        if target[0].startswith("."):
            if not w.staging_version:
                continue
            mod = left.split()[0]
            lines.append(f"{mod} => {mod} {w.staging_version}")
        else:
            lines.append(f"{left} => {right}")
    return lines


def _module_dir(w: Wrapper, wdir: Path) -> Path:
    out = subprocess.run([GO, "mod", "download", "-json", f"{w.module}@{w.version}"], cwd=wdir, env=_go_env(),
                         capture_output=True, text=True, check=True)
    return Path(json.loads(out.stdout)["Dir"])


def build_wrapper(w: Wrapper, work: Path, out: Path, log) -> None:
    """Generate the wrapper module of w and build its binaries into out."""
    wdir = work / w.name
    if wdir.exists():
        shutil.rmtree(wdir)
    if w.sources:
        shutil.copytree(w.sources, wdir)
        req = "".join(f"require {m} {v}\n" for m, v in w.extra_require.items())
        (wdir / "go.mod").write_text(f"module {w.module}\n\ngo 1.25\n\n{req}")
        _run([GO, "mod", "tidy"], wdir, log)
        _build_binaries(w, wdir, out, log)
        return
    wdir.mkdir(parents=True)
    (wdir / "go.mod").write_text(f"module t2v.local/testcluster/{w.name}\n\ngo 1.25\n")
    replaces = _upstream_replaces(w, wdir, log)
    text = f"module t2v.local/testcluster/{w.name}\n\ngo 1.25\n\nrequire {w.module} {w.version}\n"
    if replaces:
        text += "\nreplace (\n" + "".join(f"\t{r}\n" for r in replaces) + ")\n"
    (wdir / "go.mod").write_text(text)
    # Start from the upstream's own checksums: some of its pinned dependencies are not in the sum database.
    upstream_sum = _module_dir(w, wdir) / "go.sum"
    if upstream_sum.is_file():
        shutil.copyfile(upstream_sum, wdir / "go.sum")
    if w.main_go:
        (wdir / "main.go").write_text(w.main_go)
        _run([GO, "mod", "tidy"], wdir, log)
    else:
        # Every package names the pinned version, or `go get` would move to the latest release.
        _run([GO, "get", *[f"{p}@{w.version}" for p in w.binaries.values()]], wdir, log)
    _build_binaries(w, wdir, out, log)


def _build_binaries(w: Wrapper, wdir: Path, out: Path, log) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, pkg in w.binaries.items():
        if (out / name).is_file():
            continue
        cmd = [GO, "build", "-trimpath", "-p", str(os.cpu_count() or 2), "-o", str(tmp / name)]
        if w.ldflags:
            cmd += ["-ldflags", f"-s -w {w.ldflags}"]
        else:
            cmd += ["-ldflags", "-s -w"]
        _run(cmd + [pkg], wdir, log)
        out.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, out / name)


def build(only: list[str] | None = None) -> Path:
    """Build every missing component; a no-op when the cache is complete."""
    out = bin_dir()
    if not [b for b in missing() if not only or b in only]:
        return out
    cache_root().mkdir(parents=True, exist_ok=True)
    # Several test sessions may ask for a build at once; one builds, the others wait and reuse it.
    with open(cache_root() / "build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"testcluster: waiting for another build to finish ({cache_root() / 'build.log'})", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(only, out)


def _build_locked(only: list[str] | None, out: Path) -> Path:
    todo = [b for b in missing() if not only or b in only]
    if not todo:
        return out
    work = cache_root() / "work"
    work.mkdir(parents=True, exist_ok=True)
    log_path = cache_root() / "build.log"
    print(f"testcluster: building {', '.join(todo)} into {out} (log: {log_path})", file=sys.stderr)
    with open(log_path, "a") as log:
        for w in WRAPPERS:
            if any(b in todo for b in w.binaries):
                print(f"testcluster: building {w.name} {w.version}", file=sys.stderr)
                build_wrapper(w, work, _out_dir(w), log)
    return out
