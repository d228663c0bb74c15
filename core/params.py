"""Validation of video requests, shared by the JSON API, form posts and CSV rows.

A request is `jobcontract.video.VideoParams` as a client spells it: `seconds` or `num_frames`,
`size` for width and height, no `fps` (the model's), plus `metadata`. The limits are read off
`VideoParams` and the model's spec (jobimage/models/), never written here; every error names the
field and the value it got.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidParam
from jobcontract import video as params
from jobcontract.video import MAX_PROMPT_CHARS, PARAM_FIELDS, VideoParams
from jobimage.models import SPECS, spec_for
from jobimage.models.spec import size_of

MAX_METADATA_KEYS = 16

# How a request spells the parameters it does not give as they are: the duration as seconds or frames,
# the frame size as one `size`, the frame rate never (the model's).
SPELLED = {"num_frames": ("seconds", "num_frames"), "width": ("size",), "height": (), "fps": ()}
FIELDS = tuple(f for p in PARAM_FIELDS for f in SPELLED.get(p, (p,))) + ("metadata",)
# Form fields and CSV cells are text: metadata (an object) comes only in JSON bodies.
TEXT_FIELDS = tuple(f for f in FIELDS if f != "metadata")
# Numbers a request gives as they are: checked against VideoParams' limits, defaulted from the model's spec.
PLAIN_NUMBERS = tuple(f for f in PARAM_FIELDS if f not in SPELLED and f != "seed"
                      and VideoParams.model_fields[f].annotation in (int, float))

# Seconds as text: a plain decimal in (0, 5.43] (OpenAI sends strings such as "4").
SECONDS_PATTERN = r"^(0?\.[0-9]*[1-9][0-9]*|0*[1-4](\.[0-9]+)?|0*5(\.([0-3][0-9]*|4|4[0-2][0-9]*|430*)?)?)$"
# Every model's sizes, frame counts and longest clip, for the schema (a request is checked against its own model's).
SIZES = tuple(dict.fromkeys(s for spec in SPECS.values() for s in spec.sizes))
ALLOWED_FRAMES = tuple(sorted({f for spec in SPECS.values() for f in spec.valid_frames}))
MAX_SECONDS = max(spec.max_seconds for spec in SPECS.values())

# (model, text) -> its tokens, or None where the model's tokenizer is not reachable here.
TokenCounter = Callable[[str, str], "int | None"]


class VideoSpec(VideoParams):
    """A validated request for one video: its parameters and the caller's metadata."""

    metadata: dict[str, str] = {}

    def canonical(self, *, seed_given: bool) -> dict[str, Any]:
        """What identifies the request for idempotency (a drawn seed is not part of it)."""
        return self.model_dump(exclude=None if seed_given else {"seed"})

    def params(self) -> dict[str, Any]:
        """The video's parameters alone (the DB row's and the manifest item's columns)."""
        return self.model_dump(include=set(PARAM_FIELDS))


def seconds_label(num_frames: int, model: str = "") -> str:
    """Duration as the API shows it: '2.83' for 85 frames."""
    return spec_for(model).seconds_label(num_frames)


def _blank(v: Any, strict: bool = False) -> bool:
    """An optional field left out: absent or null in JSON (`strict`); absent or empty as a form field."""
    return v is None or (not strict and v == "")


def _number(field: str, v: Any, kind: type, strict: bool = False) -> float | int:
    if isinstance(v, bool) or (strict and isinstance(v, str)):
        raise InvalidParam(f"{field} must be a number, got {v!r}", param=field)
    try:
        n = kind(v) if not (kind is int and isinstance(v, str) and not re.fullmatch(r"\s*-?\d+\s*", v)) else None
    except (TypeError, ValueError):
        n = None
    if n is None or (kind is int and isinstance(v, float) and not v.is_integer()):
        raise InvalidParam(f"{field} must be {'an integer' if kind is int else 'a number'}, got {v!r}", param=field)
    if isinstance(n, float) and not math.isfinite(n):
        raise InvalidParam(f"{field} must be a finite number, got {v!r}", param=field)
    return n


def _checked(field: str, value: Any) -> Any:
    """`value` if it is within VideoParams' limits for `field`; else a 400 naming both."""
    if field in params.problems({field: value}):
        shown = f"{value:g}" if isinstance(value, float) else value
        raise InvalidParam(f"{field} {params.explain(field, value)}, got {shown}", param=field)
    return value


def parse_size(v: Any, sizes: tuple[str, ...] = SIZES) -> tuple[int, int]:
    """'848x480' -> (848, 480), for the sizes offered."""
    if not isinstance(v, str) or v.strip().lower() not in sizes:
        raise InvalidParam(f"size {v!r} is not supported: use {sizes[0]} (native) or one of {', '.join(sizes[1:])}",
                           param="size")
    return size_of(v)


def parse_video(raw: dict[str, Any], *, default_model: str, models: list[str],
                strict: bool = False, tokens: TokenCounter | None = None) -> tuple[VideoSpec, bool]:
    """Validate one request; returns the spec and whether the caller chose the seed.

    `strict` (JSON bodies): numbers must be JSON numbers; form fields and CSV cells are text.
    `tokens`: counts a prompt's tokens with the model's tokenizer, so what the pod would refuse
    is refused here.
    """
    fields = FIELDS if strict else TEXT_FIELDS
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InvalidParam(f"unknown field {unknown[0]!r}; accepted fields: {', '.join(fields)}", param=unknown[0])
    blank = partial(_blank, strict=strict)

    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParam(f"prompt is required and must be non-empty text, got {prompt!r}", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:  # as sent, spaces included: the limit the schema states
        raise InvalidParam(f"prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}", param="prompt")
    prompt = prompt.strip()
    if "\x00" in prompt:
        raise InvalidParam("prompt must not contain NUL characters", param="prompt")

    model = default_model if blank(raw.get("model")) else raw["model"]
    if model not in models:
        raise InvalidParam(f"model {model!r} is not available here; available: {', '.join(models)}", param="model")
    spec = spec_for(model)
    defaults = spec.defaults

    if not blank(raw.get("num_frames")) and not blank(raw.get("seconds")):
        raise InvalidParam("give seconds or num_frames, not both", param="num_frames")
    if not blank(raw.get("num_frames")):
        frames = int(_number("num_frames", raw["num_frames"], int, strict))
        if frames not in spec.valid_frames:
            raise InvalidParam(f"num_frames {frames} is not allowed: {model} needs {spec.frame_rule()}",
                               param="num_frames")
    elif not blank(raw.get("seconds")):
        v = raw["seconds"]
        too_long = f"seconds must be more than 0 and at most {spec.max_seconds:.2f}, got {v!r}"
        # JSON strings are OpenAI's "4"-style decimals; a form field is any number written as text.
        if isinstance(v, str) and strict and not re.fullmatch(SECONDS_PATTERN, v.strip()):
            raise InvalidParam(too_long, param="seconds")
        secs = float(_number("seconds", v, float))
        if not 0 < secs <= round(spec.max_seconds, 2):
            raise InvalidParam(too_long, param="seconds")
        frames = spec.frames_for_seconds(secs)
    else:
        frames = defaults.num_frames

    width, height = parse_size(defaults.size if blank(raw.get("size")) else raw["size"], spec.sizes)

    seed_given = not blank(raw.get("seed"))
    if seed_given:
        seed = _checked("seed", int(_number("seed", raw["seed"], int, strict)))
    else:
        seed = random.SystemRandom().randrange(0, 2**31)

    negative = "" if blank(raw.get("negative_prompt")) else raw["negative_prompt"]
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT_CHARS or "\x00" in negative:
        raise InvalidParam(f"negative_prompt must be text of at most {MAX_PROMPT_CHARS} characters", param="negative_prompt")
    negative = negative.strip()

    numbers = {}
    for field in PLAIN_NUMBERS:
        default = getattr(defaults, field, VideoParams.model_fields[field].default)
        kind = VideoParams.model_fields[field].annotation
        numbers[field] = default if blank(raw.get(field)) else \
            _checked(field, kind(_number(field, raw[field], kind, strict)))

    if tokens is not None:
        for field, text in (("prompt", prompt), ("negative_prompt", negative)):
            n = tokens(model, text) if text else None
            if n is not None and n > spec.max_prompt_tokens:
                raise InvalidParam(f"{field} is {n} T5 tokens, over {spec.family}'s limit of "
                                   f"{spec.max_prompt_tokens}: shorten it", param=field)

    metadata = parse_metadata(raw.get("metadata"))
    try:
        video = VideoSpec(prompt=prompt, model=model, num_frames=frames, width=width, height=height, seed=seed,
                          negative_prompt=negative, fps=spec.fps, metadata=metadata, **numbers)
    except ValidationError as e:  # a limit the checks above do not spell out: still a 400 naming the field
        field = str(e.errors()[0]["loc"][0])
        raise InvalidParam(f"{field} {params.explain(field, None) if field in PARAM_FIELDS else 'is invalid'}",
                           param=field) from e
    return video, seed_given


def parse_metadata(v: Any) -> dict[str, str]:
    """A JSON body's metadata: absent or null, or an object of at most MAX_METADATA_KEYS strings."""
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > MAX_METADATA_KEYS:
        raise InvalidParam(f"metadata must be an object with at most {MAX_METADATA_KEYS} keys", param="metadata")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not 0 < len(k) <= 64 or not isinstance(val, str) or len(val) > 512:
            raise InvalidParam(f"metadata[{str(k)[:64]!r}]: keys are 1-64 characters and values strings of at most 512",
                               param="metadata")
        out[k] = val
    return out


METADATA_SCHEMA = {"type": "object", "maxProperties": MAX_METADATA_KEYS, "propertyNames": {"minLength": 1, "maxLength": 64},
                   "additionalProperties": {"type": "string", "maxLength": 512}}


def _param_schema(field: str) -> dict[str, Any]:
    """A field's JSON schema as VideoParams declares it (limits, description), less pydantic's title and default."""
    prop = dict(VideoParams.model_json_schema()["properties"][field])
    prop.pop("title", None)
    prop.pop("default", None)
    return prop


def video_json_schema(*, models: list[str] | tuple[str, ...], form: bool = False,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of a video request: exactly what `parse_video` accepts (checked by fuzzing).

    `form`: form fields are text, so a number is any decimal text (`seconds` has no string variant),
    an empty field means the default, and there is no metadata; in JSON a null means the default.
    `extra`: more properties of the request that parse_video does not read (webhook_url).
    """
    seconds_number = {"type": "number", "exclusiveMinimum": 0, "maximum": round(MAX_SECONDS, 2)}
    blank = {"type": "string", "maxLength": 0} if form else {"type": "null"}

    def optional(prop: dict[str, Any]) -> dict[str, Any]:
        described = {"description": prop.pop("description")} if "description" in prop else {}
        return {"anyOf": [prop, blank], **described}

    fps = {spec.fps for spec in SPECS.values()}
    spelled = {
        "model": {"type": "string", "enum": list(models)},
        "seconds": {**({"oneOf": [seconds_number, {"type": "string", "pattern": SECONDS_PATTERN}]} if not form
                       else seconds_number),
                    "description": f"Duration; rounded to the model's frame rule at {'/'.join(map(str, fps))} fps "
                                   f"(at most {MAX_SECONDS:.2f})."},
        "num_frames": {"type": "integer", "enum": list(ALLOWED_FRAMES),
                       "description": f"{spec_for('').frame_rule()}; give this or seconds."},
        "size": {"type": "string", "enum": list(SIZES), "description": f"WIDTHxHEIGHT; {SIZES[0]} is native."},
    }
    properties = {f: spelled.get(f) or _param_schema(f) for f in FIELDS if f not in ("prompt", "metadata")}
    if not form:
        properties["metadata"] = dict(METADATA_SCHEMA)
    given = {"not": blank}  # seconds and num_frames may not both be given (present and not blank)
    return {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "not": {"required": ["seconds", "num_frames"], "properties": {"seconds": given, "num_frames": given}},
        "properties": {"prompt": _param_schema("prompt"),
                       **{name: optional(prop) for name, prop in properties.items()}, **(extra or {})},
    }
