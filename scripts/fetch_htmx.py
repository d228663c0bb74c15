"""Fetch the pinned htmx from the npm registry into webapp/static/vendor/ (for air-gapped clusters and tests).

Checks the tarball against the registry's sha512 integrity, then the file against the SRI hash the
CDN tag uses, so the local copy is byte for byte what the CDN serves. Does nothing when the copy is there.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webapp.pages.htmx import HTMX_LOCAL_PATH, HTMX_SRI, HTMX_VERSION  # noqa: E402

REGISTRY = "https://registry.npmjs.org"
MEMBER = "package/dist/htmx.min.js"


def sri(data: bytes, algo: str = "sha384") -> str:
    """Subresource-integrity string of `data` (`sha384-<base64>`)."""
    return f"{algo}-" + base64.b64encode(hashlib.new(algo, data).digest()).decode()


def fetch(client: httpx.Client) -> bytes:
    """The verified htmx.min.js of HTMX_VERSION."""
    meta = client.get(f"{REGISTRY}/htmx.org/{HTMX_VERSION}")
    meta.raise_for_status()
    dist = meta.json()["dist"]
    tarball = client.get(dist["tarball"])
    tarball.raise_for_status()
    got = sri(tarball.content, "sha512")
    if got != dist["integrity"]:
        raise SystemExit(f"htmx.org {HTMX_VERSION} tarball integrity mismatch: registry says "
                         f"{dist['integrity']}, download is {got}; not installing it")
    with tarfile.open(fileobj=io.BytesIO(tarball.content), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise SystemExit(f"htmx.org {HTMX_VERSION} tarball has no {MEMBER}")
        return member.read()


def main() -> int:
    if HTMX_LOCAL_PATH.is_file() and sri(HTMX_LOCAL_PATH.read_bytes()) == HTMX_SRI:
        return 0
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        data = fetch(client)
    if sri(data) != HTMX_SRI:
        raise SystemExit(f"htmx.min.js {HTMX_VERSION} is {sri(data)} but webapp/pages/htmx.py pins {HTMX_SRI}; "
                         "update HTMX_VERSION and HTMX_SRI together")
    HTMX_LOCAL_PATH.parent.mkdir(parents=True, exist_ok=True)
    tmp = HTMX_LOCAL_PATH.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(HTMX_LOCAL_PATH)
    print(f"htmx {HTMX_VERSION} -> {HTMX_LOCAL_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
