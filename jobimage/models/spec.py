"""What the service needs to know of a model, free of torch: limits, defaults, sizes, frame rule, cost.

The API checks and fills requests with it, the cost model prices them with it, the pod checks its
items against it; each model's module (mochi.py, tiny.py) declares one next to its loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Defaults:
    """What a request that leaves a field out gets."""

    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    size: str


@dataclass(frozen=True)
class ModelSpec:
    """One model's shape: frames are `temporal_factor * k + 1`, sides multiples of `size_multiple`."""

    name: str
    family: str  # what messages call it: tiny is a Mochi too
    defaults: Defaults
    sizes: tuple[str, ...]  # what the API offers, native first; the pod takes any size within the rule
    fps: int
    temporal_factor: int  # the VAE's time compression: latent frames = (frames - 1) / factor + 1
    size_multiple: int  # VAE spatial factor times the transformer's patch size
    min_frames: int
    max_frames: int
    min_side: int
    max_side: int
    max_pixels: int  # the native size; larger frames are out of distribution and memory
    max_prompt_tokens: int  # the text encoder's sequence length, `</s>` included
    # Cost: the transformer's shape, for the matmul FLOPs of one forward (the cost model's unit of work).
    layers: int
    heads: int
    head_dim: int
    context_width: int
    typical_prompt_tokens: int = 64  # T5 tokens of a typical prompt (the empty negative prompt is 1)
    notice: str | None = None  # shown on every video object of this model

    @property
    def valid_frames(self) -> tuple[int, ...]:
        """Every frame count the model takes."""
        return tuple(range(self.min_frames, self.max_frames + 1, self.temporal_factor))

    @property
    def native_size(self) -> str:
        return self.sizes[0]

    @property
    def max_seconds(self) -> float:
        return self.max_frames / self.fps

    def frames_for_seconds(self, seconds: float) -> int:
        """The frame count that follows the rule closest to `seconds`."""
        k = max(1, round((seconds * self.fps - 1) / self.temporal_factor))
        return min(self.max_frames, self.temporal_factor * k + 1)

    def seconds_label(self, num_frames: int) -> str:
        """Duration as the API shows it: '2.83' for 85 frames at 30 fps."""
        return f"{num_frames / self.fps:.2f}".rstrip("0").rstrip(".")

    def frame_rule(self) -> str:
        """The rule in words, for error messages."""
        f, lo = self.temporal_factor, self.min_frames
        return (f"{f}k+1 frames between {lo} and {self.max_frames} "
                f"({lo}, {lo + f}, {lo + 2 * f}, ..., {self.defaults.num_frames}, ..., {self.max_frames})")

    def problems(self, *, num_frames: Any, width: Any, height: Any) -> dict[str, str]:
        """What breaks the model's shape rules, by field -> message with the value; {} when it fits."""
        out: dict[str, str] = {}
        if not _is_int(num_frames) or num_frames not in self.valid_frames:
            out["num_frames"] = f"{num_frames!r} is not allowed: {self.name} needs {self.frame_rule()}"
        for name, value in (("width", width), ("height", height)):
            if not _is_int(value) or value % self.size_multiple or not self.min_side <= value <= self.max_side:
                out[name] = (f"{value!r} must be a multiple of {self.size_multiple} between {self.min_side} "
                             f"and {self.max_side}")
        if not out and height * width > self.max_pixels:
            out["height x width"] = f"{height}x{width} is over {self.max_pixels} pixels ({self.native_size})"
        return out

    def latent_tokens(self, *, num_frames: int, height: int, width: int) -> int:
        """Video tokens the transformer sees: latent frames x (height / 16) x (width / 16) for Mochi."""
        return (((num_frames - 1) // self.temporal_factor + 1) * (height // self.size_multiple)
                * (width // self.size_multiple))

    def forward_flops(self, tokens: int, *, prompt_tokens: int | None = None, layers: int | None = None,
                      width: int | None = None, context_width: int | None = None) -> float:
        """Matmul FLOPs of one batch-1 forward: linear layers of both streams, then QK^T and AV.

        Nearly all of a step is these matmuls, and attention grows with the square of the tokens, so
        seconds per FLOP stay flat across clip lengths where seconds per token do not (measured on an
        H200: 546-572 TFLOP/s compiled at 31, 85 and 163 frames; docs/performance.md).
        """
        d = width or self.heads * self.head_dim
        c = context_width or self.context_width
        t = self.typical_prompt_tokens if prompt_tokens is None else prompt_tokens
        n = tokens
        visual = 4 * d * d + 3 * d * ((4 * d * 2) // 3)  # q, k, v, out + SwiGLU feed-forward
        text = 3 * c * d + d * c + 3 * c * ((4 * c * 2) // 3)  # add_q/k/v, to_add_out, context feed-forward
        attention = 4 * (n + t) ** 2 * d
        return (layers or self.layers) * (2 * n * visual + 2 * t * text + attention)

    def work_units(self, *, num_frames: int, width: int, height: int, steps: int, guidance: float) -> float:
        """Transformer TFLOPs of one video: per step one forward, two with classifier-free guidance."""
        tokens = self.latent_tokens(num_frames=num_frames, height=height, width=width)
        return self.forward_flops(tokens) / 1e12 * steps * (2 if guidance > 1.0 else 1)


def size_of(text: str) -> tuple[int, int]:
    """'848x480' -> (848, 480)."""
    w, h = text.strip().lower().split("x")
    return int(w), int(h)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
