"""One video's parameters, written once: the fields a job pod needs and the limits every model shares.

The API's checks and schema, the DB row, the public object, the manifest item, the pod's checks,
the checkpoint's inputs, the page's rerun and the CLI options are all read off `VideoParams`.
What depends on the model (the frame rule, sizes, defaults, the token limit) is in the model's
spec (jobimage/models/); `VideoParams` holds only what is true of every model. It lives in the
job contract because both sides import it: the service, and the torch-free part of the pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


# A cheap cap on the prompt and the negative prompt before tokenizing; the model's token limit is the
# real one (its spec, checked at submission).
MAX_PROMPT_CHARS = 2000


class VideoParams(BaseModel):
    """What decides one video, with its limits; validated as given (strict: no text for numbers)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern="^[^\\x00]*\\S[^\\x00]*$",
                        description="What to show; at most the model's text-encoder tokens (256 for Mochi's T5).")
    model: str = Field(min_length=1, max_length=64, description="Model name, e.g. mochi-1-preview.")
    num_frames: int = Field(ge=1, description="Frame count; the model's frame rule applies (Mochi: 6k+1).")
    width: int = Field(ge=1, description="Frame width in pixels.")
    height: int = Field(ge=1, description="Frame height in pixels.")
    # 2^32-1: what the API has always published; torch takes more, numpy-seeded tools do not.
    seed: int = Field(ge=0, le=2**32 - 1, description="Random seed; the same seed and settings make the same video.")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, pattern="^[^\\x00]*$", description="What to avoid.")
    # Two at least: diffusers' linear_quadratic_schedule (Mochi's sigmas) divides by zero for one step.
    num_inference_steps: int = Field(ge=2, le=200, description="Denoising steps.")
    guidance_scale: float = Field(ge=0.0, le=20.0, allow_inf_nan=False,
                                  description="Classifier-free guidance; above 1 doubles the work per step.")
    fps: int = Field(ge=1, le=60, description="Frames per second of the MP4.")
    crf: int = Field(18, ge=0, le=51, description="x264 quality of the MP4: 0 lossless, 51 smallest; 18 looks "
                                                  "lossless at 480p.")


PARAM_FIELDS = tuple(VideoParams.model_fields)
# Fields that change the file but not the latents: a denoising checkpoint ignores them.
OUTPUT_ONLY = ("fps", "crf")
LATENT_INPUTS = tuple(f for f in PARAM_FIELDS if f not in OUTPUT_ONLY)


def bound(field: str, kind: str) -> Any:
    """A limit of a field as declared above: kind is ge, le or max_length."""
    for meta in VideoParams.model_fields[field].metadata:
        if kind == "ge" and isinstance(meta, annotated_types.Ge):
            return meta.ge
        if kind == "le" and isinstance(meta, annotated_types.Le):
            return meta.le
        if kind == "max_length" and isinstance(meta, annotated_types.MaxLen):
            return meta.max_length
    raise KeyError(f"{field} declares no {kind}")


MAX_SEED = bound("seed", "le")
MIN_STEPS, MAX_STEPS = bound("num_inference_steps", "ge"), bound("num_inference_steps", "le")
MIN_GUIDANCE, MAX_GUIDANCE = bound("guidance_scale", "ge"), bound("guidance_scale", "le")
MIN_FPS, MAX_FPS = bound("fps", "ge"), bound("fps", "le")


def explain(field: str, value: Any) -> str:
    """Why `value` is refused for `field`, in words with the limits (the value itself is shown by the caller)."""
    kind = {int: "an integer", float: "a number"}.get(VideoParams.model_fields[field].annotation)
    if kind:
        lo, hi = _maybe(field, "ge"), _maybe(field, "le")
        if hi is None:
            return f"must be {kind} of at least {lo}"
        return f"must be {kind} between {lo:g} and {hi:g}" if kind == "a number" else f"must be {kind} between {lo} and {hi}"
    if field == "prompt":
        return f"must be non-empty text of at most {MAX_PROMPT_CHARS} characters, without NUL"
    return f"must be text of at most {bound(field, 'max_length')} characters, without NUL"


def _maybe(field: str, kind: str) -> Any:
    try:
        return bound(field, kind)
    except KeyError:
        return None


def problems(values: Mapping[str, Any]) -> dict[str, str]:
    """Each field given in `values` that breaks its limit above -> why; {} when all hold."""
    out: dict[str, str] = {}
    for field in PARAM_FIELDS:
        if field in values:
            try:
                _ADAPTERS[field].validate_python(values[field])
            except ValidationError:
                out[field] = explain(field, values[field])
    return out


_ADAPTERS = {name: TypeAdapter(Annotated[info.annotation, info], config=ConfigDict(strict=True))
             for name, info in VideoParams.model_fields.items()}
