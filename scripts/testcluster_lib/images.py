"""Build t2v's images from their Dockerfiles without Docker or a registry, and load them into containerd.

Machines without Docker (ours, CI) build with Debian's buildah: each Dockerfile's BASE_IMAGE is a Debian
root filesystem made from Debian packages by mmdebstrap (the CPU base for tests), committed once into
buildah's storage. `load` hands an image to the test node's containerd as a docker-archive (`ctr images
import`), no registry involved. With Docker, `make images` runs `docker build` on the same Dockerfiles
with their own (digest-pinned) bases.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import build as b

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "images"
TAG = "local"
DEBIAN_SUITE = "bookworm"
# The CPU base: Python with its venv module (the Dockerfiles' `python3 -m venv`), certificates, and the
# users/groups tools the Dockerfiles call.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")


@dataclass(frozen=True)
class Image:
    """One image: its Dockerfile, build context and name (without tag)."""

    name: str
    dockerfile: Path
    context: Path
    build_args: dict[str, str] = field(default_factory=dict)
    needs_base: bool = True

    @property
    def ref(self) -> str:
        return f"{self.name}:{TAG}"


SERVICE = Image("t2v", REPO / "Dockerfile", REPO)
JOB = Image("t2v-jobimage", REPO / "jobimage" / "Dockerfile", REPO)
# The sandbox image containerd starts every pod with (its config names it); test-only stand-ins below.
PAUSE = Image("t2v.local/pause", HERE / "pause.Dockerfile", Path(), needs_base=False)
POSTGRES = Image("t2v-test-postgres", HERE / "postgres.Dockerfile", HERE)
MINIO = Image("t2v-test-minio", HERE / "minio.Dockerfile", Path())
PRODUCT = (SERVICE, JOB)
TEST_NODE = (PAUSE, SERVICE, JOB, POSTGRES, MINIO)


class ImageError(RuntimeError):
    """An image could not be built or loaded; the message names the step and its output."""


def _log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    log = b.cache_root() / "images.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if p.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ImageError(f"{what} failed ({p.returncode}): {' '.join(cmd)}\n--- {log} ---\n{tail}")
    return p


def _out(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def base_ref() -> str:
    """The Debian CPU base in buildah's storage, made by mmdebstrap once per package list."""
    tag = hashlib.sha256(" ".join((DEBIAN_SUITE, *BASE_PACKAGES)).encode()).hexdigest()[:12]
    ref = f"localhost/t2v-debian-base:{tag}"
    if _out(["buildah", "images", "-q", ref]):
        return ref
    tar = b.cache_root() / "images" / f"debian-base-{tag}.tar"
    tar.parent.mkdir(parents=True, exist_ok=True)
    _log(f"making the Debian base with mmdebstrap ({DEBIAN_SUITE}: {', '.join(BASE_PACKAGES)})")
    _run(["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "--format=tar",
          DEBIAN_SUITE, str(tar)], "mmdebstrap")
    c = _out(["buildah", "from", "scratch"])
    try:
        _run(["buildah", "add", c, str(tar), "/"], "buildah add")
        _run(["buildah", "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "--cmd", "/bin/sh", c], "buildah config")
        _run(["buildah", "commit", "--rm", c, ref], "buildah commit")
    except BaseException:
        subprocess.run(["buildah", "rm", c], capture_output=True)
        raise
    tar.unlink()
    return ref


def _context(image: Image) -> Path:
    """The build context: the repo, the images folder, or a folder holding one built binary."""
    if image in (PAUSE, MINIO):
        binary = b.binary("pause" if image is PAUSE else "minio")
        if not binary.is_file():
            b.build([binary.name])
        ctx = b.cache_root() / "images" / f"ctx-{binary.name}"
        ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, ctx / binary.name)
        return ctx
    return image.context


def _machine_pip_mounts() -> list[str]:
    """This machine's pip settings for the builds' RUN steps, as read-only mounts (never in a layer):
    a CA bundle pip must trust (PIP_CERT, e.g. a proxy's) and local wheel folders (PIP_FIND_LINKS)."""
    conf, mounts = ["[global]"], []
    cert = os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        mounts.append(f"--volume={cert}:/opt/t2v-build/ca.crt:ro")
        conf.append("cert = /opt/t2v-build/ca.crt")
    links = [p for p in os.environ.get("PIP_FIND_LINKS", "").split() if Path(p).is_dir()]
    for i, folder in enumerate(links):
        mounts.append(f"--volume={folder}:/opt/t2v-build/wheels{i}:ro")
    if links:
        conf.append("find-links = " + " ".join(f"/opt/t2v-build/wheels{i}" for i in range(len(links))))
    if not mounts:
        return []
    path = b.cache_root() / "images" / "pip.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(conf) + "\n")
    return [*mounts, f"--volume={path}:/etc/pip.conf:ro"]


def build_buildah(image: Image) -> str:
    """Build one image with buildah (layers cached); returns its image id."""
    args = [f"--build-arg=BASE_IMAGE={base_ref()}"] if image.needs_base else []
    args += _machine_pip_mounts()
    args += [f"--build-arg={k}={v}" for k, v in image.build_args.items()]
    _log(f"building {image.ref} from {image.dockerfile.relative_to(REPO)}")
    # chroot isolation and the host network: no bridge or iptables rule for the build, and pip reaches PyPI.
    _run(["buildah", "bud", "--layers", "--isolation", "chroot", "--network", "host", *args,
          "-f", str(image.dockerfile), "-t", f"localhost/{image.ref}", str(_context(image))], f"build {image.ref}")
    # Earlier builds of this name are now dangling: drop them (the layer cache stays).
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True)
    return _out(["buildah", "images", "-q", "--no-trunc", f"localhost/{image.ref}"])


def build_docker(image: Image) -> None:
    """`docker build` of one product image with its Dockerfile's own base."""
    _run(["docker", "build", "-f", str(image.dockerfile), "-t", image.ref, str(image.context)], f"build {image.ref}")


def build_product_images() -> list[str]:
    """`make images`: the service and job images, with Docker when present, else buildah."""
    if shutil.which("docker"):
        for image in PRODUCT:
            build_docker(image)
    else:
        for image in PRODUCT:
            build_buildah(image)
    return [i.ref for i in PRODUCT]


def build_test_node_images() -> list[str]:
    """Every image the real test node loads, built with buildah ahead of the tests (`make test-deps`), so
    the cold build (the Debian base, torch from PyPI: 10-15 minutes) is not inside a test's timeout."""
    for image in TEST_NODE:
        build_buildah(image)
    return [i.ref for i in TEST_NODE]


def load(images: tuple[Image, ...], *, address: str, marker_dir: Path) -> None:
    """Build each image with buildah and import it into containerd at `address` unless already there."""
    marker_dir.mkdir(parents=True, exist_ok=True)
    ctr = ["ctr", "--address", address, "--namespace", "k8s.io"]
    for image in images:
        image_id = build_buildah(image)
        marker = marker_dir / hashlib.sha256(image.ref.encode()).hexdigest()[:16]
        have = _out([*ctr, "images", "ls", "-q", f"name=={_containerd_name(image.ref)}"])
        if have and marker.is_file() and marker.read_text() == image_id:
            continue
        _log(f"loading {image.ref} into the test node's containerd")
        # Imported under a name of its own, then tagged: replacing the old image at import would leave
        # the layers both builds share unreferenced until the new unpack ends, and containerd's garbage
        # collector removed them mid-unpack ("parent snapshot ... does not exist").
        staging = f"{image.name}:load-{image_id.removeprefix('sha256:')[:12]}"
        # Streamed from buildah into containerd: no archive on disk (the job image is ~6.6 GB).
        push = subprocess.Popen(["buildah", "push", "-q", f"localhost/{image.ref}",
                                 f"docker-archive:/dev/stdout:{staging}"], stdout=subprocess.PIPE)
        try:
            _run([*ctr, "images", "import", "-"], f"ctr import {image.ref}", stdin=push.stdout)
        finally:
            push.stdout.close()
            if push.wait() != 0:
                raise ImageError(f"buildah push of {image.ref} failed ({push.returncode})")
        _run([*ctr, "images", "tag", "--force", _containerd_name(staging), _containerd_name(image.ref)],
             f"ctr tag {image.ref}")
        # The staging name, and the localhost/... and digest names the archive also carries, would keep
        # every earlier build's layers in containerd's store.
        for name in _out([*ctr, "images", "ls", "-q"]).split():
            if name.startswith(("localhost/", "sha256:")) or name == _containerd_name(staging):
                subprocess.run([*ctr, "images", "rm", name], capture_output=True)
        marker.write_text(image_id)


def _containerd_name(ref: str) -> str:
    """How containerd names an image Kubernetes calls `ref` (docker.io/library/ for bare names)."""
    first = ref.split("/")[0]
    if "/" in ref and ("." in first or ":" in first):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"
