"""The matmul FLOPs of one Mochi transformer forward, free of torch: the cost model's unit of work.

Nearly all of a step is these matmuls, and attention grows with the square of the tokens, so
seconds per FLOP stay flat across clip lengths where seconds per token do not (measured on an
H200: 546-572 TFLOP/s compiled at 31, 85 and 163 frames; docs/performance.md).
"""

from __future__ import annotations

from jobimage.limits import SIZE_MULTIPLE, TEMPORAL_FACTOR

# Mochi-1 preview's transformer: 48 layers, 24 heads of 128, a 1536-wide prompt stream.
LAYERS, HEADS, HEAD_DIM, CONTEXT_WIDTH = 48, 24, 128, 1536
TYPICAL_PROMPT_TOKENS = 64  # T5 tokens of a typical prompt (the empty negative prompt is 1)


def latent_tokens(*, num_frames: int, height: int, width: int) -> int:
    """Video tokens the transformer sees: latent frames x (height / 16) x (width / 16)."""
    return ((num_frames - 1) // TEMPORAL_FACTOR + 1) * (height // SIZE_MULTIPLE) * (width // SIZE_MULTIPLE)


def forward_flops(tokens: int, *, prompt_tokens: int = TYPICAL_PROMPT_TOKENS, layers: int = LAYERS,
                  width: int = HEADS * HEAD_DIM, context_width: int = CONTEXT_WIDTH) -> float:
    """Matmul FLOPs of one batch-1 forward: linear layers of both streams, then QK^T and AV."""
    d, c, n, t = width, context_width, tokens, prompt_tokens
    visual = 4 * d * d + 3 * d * ((4 * d * 2) // 3)  # q, k, v, out + SwiGLU feed-forward
    text = 3 * c * d + d * c + 3 * c * ((4 * c * 2) // 3)  # add_q/k/v, to_add_out, context feed-forward
    attention = 4 * (n + t) ** 2 * d
    return layers * (2 * n * visual + 2 * t * text + attention)
