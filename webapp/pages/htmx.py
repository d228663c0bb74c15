"""The one pinned htmx release: the CDN tag, its SRI hash, and the local copy `make htmx` fetches."""

from __future__ import annotations

from pathlib import Path

HTMX_VERSION = "2.0.11"
# sha384 of package/dist/htmx.min.js in the npm tarball of HTMX_VERSION: the same bytes the CDN serves.
HTMX_SRI = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
# The air-gapped copy (git-ignored), written by scripts/fetch_htmx.py.
HTMX_LOCAL_PATH = Path(__file__).resolve().parents[1] / "static" / "vendor" / "htmx.min.js"
HTMX_LOCAL_URL = f"/static/vendor/htmx.min.js?v={HTMX_VERSION}"
