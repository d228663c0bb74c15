"""Mochi-1 preview (genmo/mochi-1-preview through diffusers): its spec.

Torch-free: the service reads `MOCHI`. Its loader and generator for the pod are the diffusers
steps in pipeline.py, which the tiny Mochi shares (the registry hands them out: `pod_model`).
"""

from __future__ import annotations

from jobimage.models.spec import Defaults, ModelSpec

# 848x480 is what Mochi was trained on; the others keep sides multiples of 16 (8x VAE, 2x2 patches)
# and at most as many pixels, so memory stays bounded. Quality is best at the native size.
SIZES = ("848x480", "480x848", "640x480", "480x640", "576x576", "640x352", "352x640", "432x240", "240x432",
         "256x144", "144x256")

MOCHI = ModelSpec(
    name="mochi-1-preview",
    family="Mochi",
    defaults=Defaults(num_frames=85, num_inference_steps=64, guidance_scale=4.5, size="848x480"),
    sizes=SIZES,
    fps=30,
    temporal_factor=6,  # Mochi VAE: latent frames = (frames - 1) / 6 + 1
    size_multiple=16,  # VAE spatial factor 8 x transformer patch 2
    min_frames=7, max_frames=163,  # 163 is the released model's longest clip (5.4 s at 30 fps)
    min_side=64, max_side=1280,
    max_pixels=848 * 480,
    max_prompt_tokens=256,  # MochiPipeline max_sequence_length: T5 tokens incl. </s>
    # Mochi-1 preview's transformer: 48 layers, 24 heads of 128, a 1536-wide prompt stream.
    layers=48, heads=24, head_dim=128, context_width=1536,
)

