"""A small HTTP client for the t2v API (what the CLI uses; handy in scripts too)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "cancelled"}


class ClientError(Exception):
    """The server answered with an error body, or could not be reached."""


class Client:
    """Talks to one t2v server."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Downloads may redirect to a presigned storage URL; httpx drops the API key when the host changes.
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, follow_redirects=True)

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach {self.http.base_url}: {e}") from e
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                msg = err["message"]
                if err.get("rows"):
                    msg += "\n" + "\n".join(f"  row {r['row']}: {r['message']}" for r in err["rows"])
            except (ValueError, KeyError, TypeError):
                msg = resp.text[:500]
            raise ClientError(f"HTTP {resp.status_code}: {msg}")
        return resp

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/videos", json=body, headers=headers).json()

    def get(self, video_id: str) -> dict:
        return self._call("GET", f"/v1/videos/{video_id}").json()

    def list(self, **params: Any) -> dict:
        return self._call("GET", "/v1/videos", params={k: v for k, v in params.items() if v is not None}).json()

    def cancel(self, video_id: str) -> dict:
        return self._call("POST", f"/v1/videos/{video_id}/cancel").json()

    def delete(self, video_id: str) -> dict:
        return self._call("DELETE", f"/v1/videos/{video_id}").json()

    def download(self, video_id: str, dest: Path, variant: str = "video") -> int:
        try:
            with self.http.stream("GET", f"/v1/videos/{video_id}/content", params={"variant": variant}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._raise(resp)
                n = 0
                tmp = dest.with_name(dest.name + ".part")
                with open(tmp, "wb") as out:
                    for chunk in resp.iter_bytes():
                        out.write(chunk)
                        n += len(chunk)
                tmp.replace(dest)
                return n
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach {self.http.base_url}: {e}") from e

    def _raise(self, resp: httpx.Response) -> None:
        try:
            msg = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = resp.text[:500]
        raise ClientError(f"HTTP {resp.status_code}: {msg}")

    def batch_csv(self, path: Path) -> dict:
        with open(path, "rb") as f:
            return self._call("POST", "/v1/batches", files={"file": (path.name, f, "text/csv")}).json()

    def batch(self, batch_id: str) -> dict:
        return self._call("GET", f"/v1/batches/{batch_id}").json()

    def cancel_batch(self, batch_id: str) -> dict:
        return self._call("POST", f"/v1/batches/{batch_id}/cancel").json()

    def wait(self, video_id: str, *, poll: float = 1.0, timeout: float | None = None) -> Iterator[dict]:
        """Yield the video each time it changes, until it is terminal."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            video = self.get(video_id)
            key = (video["status"], video["progress"], video.get("queue_position"))
            if key != last:
                last = key
                yield video
            if video["status"] in TERMINAL:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(f"video {video_id} is still {video['status']} after {timeout:g} s")
            time.sleep(poll)
