"""One video spec: the API, the DB row, the item, the pod's checks and the page read the same limits."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from fastapi.testclient import TestClient

from core.items import item_for
from core.models import Video
from core.params import FIELDS, parse_video
from jobcontract.records import Item
from jobcontract.video import MAX_PROMPT_CHARS, MAX_SEED, PARAM_FIELDS
from jobimage.models import SPECS, spec_for
from jobimage.validate import check_params
from webapp.pages.views import rerun_request

HX = {"HX-Request": "true"}


def test_every_parameter_is_a_column_and_an_item_field() -> None:
    assert set(PARAM_FIELDS) <= set(Video.model_fields)
    assert set(PARAM_FIELDS) <= {f.name for f in fields(Item)}


def test_an_item_carries_the_row_parameters_unchanged() -> None:
    spec, _ = parse_video({"prompt": "a fox", "seed": 7}, default_model="tiny", models=["tiny"])
    video = Video(id="video_x", status="queued", created_at=0, updated_at=0, **spec.params())
    item = item_for(video, 3)
    assert {f: getattr(item, f) for f in PARAM_FIELDS} == spec.params()
    assert item.index == 3 and item.fps == spec_for("tiny").fps
    assert check_params(spec.params()) == []


@pytest.mark.parametrize(("field", "value"), [
    ("seed", MAX_SEED + 1),
    ("prompt", "x" * (MAX_PROMPT_CHARS + 1)),
    ("num_inference_steps", 1),
    ("guidance_scale", 20.5),
    ("num_frames", 8),
], ids=str)
def test_api_and_pod_refuse_the_same_values(field: str, value: object) -> None:
    from core.errors import InvalidParam

    with pytest.raises(InvalidParam) as refused:
        parse_video({"prompt": "p", field: value}, default_model="mochi-1-preview", models=["mochi-1-preview"],
                    strict=True)
    assert refused.value.param == field
    good, _ = parse_video({"prompt": "p", "seed": 1}, default_model="mochi-1-preview", models=["mochi-1-preview"])
    problems = check_params({**good.params(), field: value})
    assert len(problems) == 1 and problems[0].startswith(field + ":"), problems


def test_api_and_pod_accept_the_limits_themselves() -> None:
    spec = SPECS["mochi-1-preview"]
    raw = {"prompt": "x" * MAX_PROMPT_CHARS, "seed": MAX_SEED, "num_frames": spec.max_frames, "num_inference_steps": 200,
           "guidance_scale": 20}
    video, _ = parse_video(raw, default_model=spec.name, models=[spec.name], strict=True)
    assert check_params(video.params()) == []


def test_the_rerun_request_remakes_the_same_parameters() -> None:
    spec, _ = parse_video({"prompt": "a fox", "seed": 5, "size": "256x144", "metadata": {"k": "v"}},
                          default_model="tiny", models=["tiny"], strict=True)
    video = Video(id="video_x", status="queued", created_at=0, updated_at=0, metadata_json=spec.metadata,
                  **spec.params())
    raw = rerun_request(video)
    assert set(raw) <= set(FIELDS)
    again, _ = parse_video(raw, default_model="tiny", models=["tiny"], strict=True)
    assert again == spec


def test_the_page_offers_only_sizes_the_api_takes_and_a_blank_default(client: TestClient) -> None:
    page = client.get("/").text
    offered = set(re.findall(r'<option value="(\d+x\d+)">', page))
    assert offered and offered <= set(spec_for("tiny").sizes) and "512x512" not in offered
    assert '<option value="">default (432x240)</option>' in page


def test_a_form_post_with_the_default_size_gets_the_models_default(client: TestClient) -> None:
    client.post("/ui/videos", data={"prompt": "tiny default", "size": ""}, headers=HX)
    made = client.get("/v1/videos").json()["data"][0]
    assert made["model"] == "tiny" and made["size"] == spec_for("tiny").defaults.size == "432x240"
