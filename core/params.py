"""Validation of video parameters, shared by the JSON API, form posts and CSV rows.

Every error names the field and the value it got. Limits follow Mochi: frames
are 6k+1 (the VAE compresses time 6x), sides are multiples of 16 (8x VAE and
2x2 patches), 30 fps, prompts of at most 256 T5 tokens (checked in the pod).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

# The pod's own limits (torch-free module): the API refuses what the pod would refuse.
from jobimage.limits import DEFAULT_FPS as FPS
from jobimage.limits import MAX_FRAMES, MAX_GUIDANCE, MAX_STEPS, MIN_FRAMES, MIN_STEPS
from jobimage.limits import VALID_FRAMES as ALLOWED_FRAMES
from core.errors import InvalidParam

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1
MAX_METADATA_KEYS = 16

# Per-model defaults: the tiny model is for demos and tests, so it is cheap by default.
DEFAULTS = {
    "mochi-1-preview": {"num_frames": 85, "num_inference_steps": 64, "guidance_scale": 4.5, "size": "848x480"},
    # ~3 s on two CPU cores; 848x480 works too but costs ~12 s (attention over ~9,500 tokens).
    "tiny": {"num_frames": 31, "num_inference_steps": 8, "guidance_scale": 4.5, "size": "432x240"},
}
FIELDS = ("prompt", "model", "seconds", "num_frames", "size", "seed", "negative_prompt",
          "num_inference_steps", "guidance_scale", "metadata")
# Form fields and CSV cells are text: metadata (an object) comes only in JSON bodies.
TEXT_FIELDS = tuple(f for f in FIELDS if f != "metadata")

# Seconds as text: a plain decimal in (0, 5.43] (OpenAI sends strings such as "4").
SECONDS_PATTERN = r"^(0?\.[0-9]*[1-9][0-9]*|0*[1-4](\.[0-9]+)?|0*5(\.([0-3][0-9]*|4|4[0-2][0-9]*|430*)?)?)$"


@dataclass(frozen=True)
class VideoSpec:
    """A validated request for one video."""

    prompt: str
    model: str
    num_frames: int
    width: int
    height: int
    seed: int
    negative_prompt: str
    num_inference_steps: int
    guidance_scale: float
    metadata: dict[str, str]

    def canonical(self, *, seed_given: bool) -> dict[str, Any]:
        """What identifies the request for idempotency (a drawn seed is not part of it)."""
        d = self.__dict__.copy()
        if not seed_given:
            d.pop("seed")
        return d


def seconds_label(num_frames: int) -> str:
    """Duration as the API shows it: '2.83' for 85 frames."""
    return f"{num_frames / FPS:.2f}".rstrip("0").rstrip(".")


def frames_for_seconds(seconds: float) -> int:
    """The Mochi frame count (6k+1) closest to `seconds` at 30 fps."""
    k = max(1, round((seconds * FPS - 1) / 6))
    return min(MAX_FRAMES, 6 * k + 1)


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


# 848x480 is what Mochi was trained on; the others keep sides multiples of 16 (8x VAE, 2x2 patches)
# and at most as many pixels, so memory stays bounded. Quality is best at the native size.
SIZES = ("848x480", "480x848", "640x480", "480x640", "576x576", "640x352", "352x640", "432x240", "240x432",
         "256x144", "144x256")


def parse_size(v: Any) -> tuple[int, int]:
    """'848x480' -> (848, 480), for the sizes in SIZES."""
    if not isinstance(v, str) or v.strip().lower() not in SIZES:
        raise InvalidParam(f"size {v!r} is not supported: use 848x480 (native) or one of {', '.join(SIZES[1:])}",
                           param="size")
    w, h = v.strip().lower().split("x")
    return int(w), int(h)


def parse_video(raw: dict[str, Any], *, default_model: str, models: list[str],
                strict: bool = False) -> tuple[VideoSpec, bool]:
    """Validate one request; returns the spec and whether the caller chose the seed.

    `strict` (JSON bodies): numbers must be JSON numbers; form fields and CSV cells are text.
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
    defaults = DEFAULTS.get(model, DEFAULTS["mochi-1-preview"])

    if not blank(raw.get("num_frames")) and not blank(raw.get("seconds")):
        raise InvalidParam("give seconds or num_frames, not both", param="num_frames")
    if not blank(raw.get("num_frames")):
        frames = int(_number("num_frames", raw["num_frames"], int, strict))
        if frames not in ALLOWED_FRAMES:
            raise InvalidParam(
                f"num_frames {frames} is not allowed: Mochi needs 6k+1 frames between {MIN_FRAMES} and "
                f"{MAX_FRAMES} (7, 13, 19, ..., 85, ..., 163)", param="num_frames")
    elif not blank(raw.get("seconds")):
        v = raw["seconds"]
        # JSON strings are OpenAI's "4"-style decimals; a form field is any number written as text.
        if isinstance(v, str) and strict and not re.fullmatch(SECONDS_PATTERN, v.strip()):
            raise InvalidParam(f"seconds must be more than 0 and at most {MAX_FRAMES / FPS:.2f}, got {v!r}",
                               param="seconds")
        secs = float(_number("seconds", v, float))
        if not 0 < secs <= round(MAX_FRAMES / FPS, 2):
            raise InvalidParam(f"seconds must be more than 0 and at most {MAX_FRAMES / FPS:.2f}, got {raw['seconds']!r}",
                               param="seconds")
        frames = frames_for_seconds(secs)
    else:
        frames = defaults["num_frames"]

    width, height = parse_size(defaults["size"] if blank(raw.get("size")) else raw["size"])

    seed_given = not blank(raw.get("seed"))
    if seed_given:
        seed = int(_number("seed", raw["seed"], int, strict))
        if not 0 <= seed <= MAX_SEED:
            raise InvalidParam(f"seed must be between 0 and {MAX_SEED}, got {seed}", param="seed")
    else:
        seed = random.SystemRandom().randrange(0, 2**31)

    negative = "" if blank(raw.get("negative_prompt")) else raw["negative_prompt"]
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT_CHARS or "\x00" in negative:
        raise InvalidParam(f"negative_prompt must be text of at most {MAX_PROMPT_CHARS} characters", param="negative_prompt")

    steps = defaults["num_inference_steps"]
    if not blank(raw.get("num_inference_steps")):
        steps = int(_number("num_inference_steps", raw["num_inference_steps"], int, strict))
        if not MIN_STEPS <= steps <= MAX_STEPS:
            raise InvalidParam(f"num_inference_steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}",
                               param="num_inference_steps")

    guidance = defaults["guidance_scale"]
    if not blank(raw.get("guidance_scale")):
        guidance = float(_number("guidance_scale", raw["guidance_scale"], float, strict))
        if not 0 <= guidance <= MAX_GUIDANCE:
            raise InvalidParam(f"guidance_scale must be between 0 and {MAX_GUIDANCE:g}, got {guidance:g}",
                               param="guidance_scale")

    metadata = parse_metadata(raw.get("metadata"))
    spec = VideoSpec(prompt=prompt, model=model, num_frames=frames, width=width, height=height, seed=seed,
                     negative_prompt=negative.strip(), num_inference_steps=steps, guidance_scale=guidance,
                     metadata=metadata)
    return spec, seed_given


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


def video_json_schema(*, models: list[str] | tuple[str, ...], form: bool = False,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of a video request: exactly what `parse_video` accepts (checked by fuzzing).

    `form`: form fields are text, so a number is any decimal text (`seconds` has no string variant),
    an empty field means the default, and there is no metadata; in JSON a null means the default.
    `extra`: more properties of the request that parse_video does not read (webhook_url).
    """
    text = "^[^\\x00]*\\S[^\\x00]*$"
    seconds_number = {"type": "number", "exclusiveMinimum": 0, "maximum": round(MAX_FRAMES / FPS, 2)}
    blank = {"type": "string", "maxLength": 0} if form else {"type": "null"}

    def optional(prop: dict[str, Any]) -> dict[str, Any]:
        described = {"description": prop.pop("description")} if "description" in prop else {}
        return {"anyOf": [prop, blank], **described}

    properties = {
        "model": {"type": "string", "enum": list(models)},
        "seconds": {**({"oneOf": [seconds_number, {"type": "string", "pattern": SECONDS_PATTERN}]} if not form
                       else seconds_number),
                    "description": f"Duration; rounded to Mochi's 6k+1 frames at {FPS} fps (at most {MAX_FRAMES / FPS:.2f})."},
        "num_frames": {"type": "integer", "enum": list(ALLOWED_FRAMES),
                       "description": "6k+1 between 7 and 163; give this or seconds."},
        "size": {"type": "string", "enum": list(SIZES), "description": "WIDTHxHEIGHT; 848x480 is native."},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        "negative_prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS, "pattern": "^[^\\x00]*$"},
        "num_inference_steps": {"type": "integer", "minimum": MIN_STEPS, "maximum": MAX_STEPS},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": MAX_GUIDANCE},
    }
    if not form:
        properties["metadata"] = dict(METADATA_SCHEMA)
    given = {"not": blank}  # seconds and num_frames may not both be given (present and not blank)
    return {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "not": {"required": ["seconds", "num_frames"], "properties": {"seconds": given, "num_frames": given}},
        "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": text},
                       **{name: optional(prop) for name, prop in properties.items()}, **(extra or {})},
    }
