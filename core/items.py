"""A video row as the job contract's item: what a pod needs to make it, nothing more."""

from __future__ import annotations

from core.models import Video
from jobcontract.records import Item


def item_for(video: Video, index: int) -> Item:
    """The contract item for a video row."""
    return Item(video_id=video.id, index=index, prompt=video.prompt, negative_prompt=video.negative_prompt,
                seed=video.seed, num_frames=video.num_frames, height=video.height, width=video.width,
                num_inference_steps=video.num_inference_steps, guidance_scale=video.guidance_scale,
                fps=video.fps, model=video.model, attempt=video.attempt)
