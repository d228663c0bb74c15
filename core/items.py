"""A video row as the job contract's item: what a pod needs to make it, nothing more."""

from __future__ import annotations

from core.models import Video
from jobcontract.records import Item
from jobcontract.video import PARAM_FIELDS


def item_for(video: Video, index: int) -> Item:
    """The contract item for a video row: its parameters as stored, and who runs it."""
    return Item(video_id=video.id, index=index, attempt=video.attempt,
                **{field: getattr(video, field) for field in PARAM_FIELDS})
