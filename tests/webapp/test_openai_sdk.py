"""The official `openai` Python SDK against t2v, as a user of OpenAI's Videos API would point it here.

The SDK refuses to run without an api_key and sends it as `Authorization: Bearer ...`, so a
server whose keys are optional must ignore a bearer that is not a t2v key; a t2v key that is
wrong or revoked is still refused, and where keys are required nothing else gets in.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import av
import openai
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from scripts.harness.server import start_server
from tests.webapp.test_access import key
from webapp.app import create_app
from webapp.auth import revoke_key
from core.db import session_for
from core.settings import Settings

# OpenAI retired its own Videos API (Sora) on 2026-09-24 and the SDK marks the resource deprecated;
# the wire format lives on here, which is the point of this file.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled to permanently shut down:DeprecationWarning")


def sdk(client: TestClient, api_key: str) -> OpenAI:
    """The SDK speaking to an in-process app (TestClient is an httpx.Client)."""
    return OpenAI(base_url="http://testserver/v1", api_key=api_key, http_client=client, max_retries=0)


@pytest.mark.slow
def test_sdk_makes_downloads_and_lists_a_video_with_any_key(tmp_path: Path) -> None:
    """Embedded default, no key created: create, poll, download (a real MP4), list."""
    server = start_server(tmp_path / "data")
    try:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="anything", max_retries=0)
        video = client.videos.create(model="tiny", prompt="a red fox running through snow", seconds="1",
                                     size="256x144")
        assert video.status == "queued" and video.model == "tiny"
        deadline = time.monotonic() + 180
        while video.status in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.5)
            video = client.videos.retrieve(video.id)
        assert video.status == "completed", video
        mp4 = client.videos.download_content(video.id).read()
        with av.open(io.BytesIO(mp4)) as container:
            frames = [f for f in container.decode(video=0)]
        assert len(frames) == 31 and (frames[0].width, frames[0].height) == (256, 144)
        assert video.id in [v.id for v in client.videos.list()]
    finally:
        server.stop()


def test_any_bearer_is_anonymous_where_keys_are_optional(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        assert sdk(c, "anything").videos.list().data == []
        assert sdk(c, "sk-proj-0123456789").videos.create(prompt="waves", model="tiny").status == "queued"
        assert c.get("/v1/videos", headers={"Authorization": "Basic abc"}).status_code == 200


def test_a_t2v_key_that_is_wrong_or_revoked_is_refused_even_where_keys_are_optional(settings: Settings) -> None:
    token = key(settings, "team-a")
    with TestClient(create_app(settings)) as c:
        assert sdk(c, token).videos.create(prompt="waves", model="tiny").status == "queued"
        for bad in ("t2v_" + "0" * 12 + "_" + "x" * 43, "t2v_typo", token[:-1] + ("A" if token[-1] != "A" else "B")):
            with pytest.raises(openai.AuthenticationError) as info:
                sdk(c, bad).videos.list()
            assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
        with session_for(settings.db_url) as s:
            revoke_key(s, key_id=token.split("_")[1])
        with pytest.raises(openai.AuthenticationError):
            sdk(c, token).videos.list()


def test_where_keys_are_required_only_a_key_gets_in(settings: Settings) -> None:
    secured = settings.model_copy(update={"auth_required": True})
    with TestClient(create_app(secured)) as c:
        with pytest.raises(openai.AuthenticationError):
            sdk(c, "anything").videos.list()
        token = key(secured, "team-b")
        video = sdk(c, token).videos.create(prompt="waves", model="tiny")
        assert [v.id for v in sdk(c, token).videos.list()] == [video.id]
