"""Input limits of a Mochi job, free of torch so the API can check requests with the same numbers.

The checks mirror what `MochiPipeline` needs: frames 6k+1 (the VAE's temporal factor),
sizes divisible by 16 (VAE factor 8 times patch size 2), and at most 256 T5 tokens.
"""

from __future__ import annotations

READY_NAME = "READY"

TEMPORAL_FACTOR = 6  # Mochi VAE: latent frames = (frames - 1) / 6 + 1
SIZE_MULTIPLE = 16  # VAE spatial factor 8 x transformer patch 2
MIN_FRAMES, MAX_FRAMES = 7, 163  # 163 is the released model's longest clip (5.4 s at 30 fps)
MIN_SIDE, MAX_SIDE = 64, 1280
MAX_PIXELS = 848 * 480  # the native size; larger frames are out of distribution and memory
# Two at least: diffusers' linear_quadratic_schedule (Mochi's sigmas) divides by zero for one step.
MIN_STEPS, MAX_STEPS = 2, 200
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0
MIN_FPS, MAX_FPS = 1, 60
MAX_SEQUENCE_LENGTH = 256  # MochiPipeline max_sequence_length: T5 tokens incl. </s>
MAX_PROMPT_CHARS = 4000  # cheap cap before tokenizing
MAX_SEED = 2**63 - 1

DEFAULT_WIDTH, DEFAULT_HEIGHT = 848, 480
DEFAULT_FPS = 30
DEFAULT_STEPS = 64
DEFAULT_GUIDANCE = 4.5

VALID_FRAMES = tuple(range(MIN_FRAMES, MAX_FRAMES + 1, TEMPORAL_FACTOR))


def check_params(*, prompt: str, num_frames: int, height: int, width: int, num_inference_steps: int,
                 guidance_scale: float, fps: int, seed: int, negative_prompt: str = "") -> list[str]:
    """Problems with a request's numbers and text lengths, each naming the field and value; [] if fine."""
    problems: list[str] = []
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("prompt: must be a non-empty string")
    elif len(prompt) > MAX_PROMPT_CHARS:
        problems.append(f"prompt: {len(prompt)} characters is over the limit of {MAX_PROMPT_CHARS}")
    if not isinstance(negative_prompt, str) or len(negative_prompt) > MAX_PROMPT_CHARS:
        problems.append(f"negative_prompt: must be a string of at most {MAX_PROMPT_CHARS} characters")
    if not _is_int(num_frames) or num_frames not in VALID_FRAMES:
        problems.append(f"num_frames: {num_frames!r} is not 6k+1 between {MIN_FRAMES} and {MAX_FRAMES} "
                        f"(e.g. 7, 31, 85, 163)")
    for name, value in (("height", height), ("width", width)):
        if not _is_int(value) or value % SIZE_MULTIPLE or not MIN_SIDE <= value <= MAX_SIDE:
            problems.append(f"{name}: {value!r} must be a multiple of {SIZE_MULTIPLE} between {MIN_SIDE} and {MAX_SIDE}")
    if _is_int(height) and _is_int(width) and height * width > MAX_PIXELS:
        problems.append(f"height x width: {height}x{width} is over {MAX_PIXELS} pixels (848x480)")
    if not _is_int(num_inference_steps) or not MIN_STEPS <= num_inference_steps <= MAX_STEPS:
        problems.append(f"num_inference_steps: {num_inference_steps!r} is not between {MIN_STEPS} and {MAX_STEPS}")
    if (not isinstance(guidance_scale, (int, float)) or isinstance(guidance_scale, bool)
            or not MIN_GUIDANCE <= guidance_scale <= MAX_GUIDANCE):
        problems.append(f"guidance_scale: {guidance_scale!r} is not between {MIN_GUIDANCE} and {MAX_GUIDANCE}")
    if not _is_int(fps) or not MIN_FPS <= fps <= MAX_FPS:
        problems.append(f"fps: {fps!r} is not between {MIN_FPS} and {MAX_FPS}")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        problems.append(f"seed: {seed!r} is not between 0 and {MAX_SEED}")
    return problems


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
