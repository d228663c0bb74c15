"""The one status enum of a video, and the transitions it may take.

Every component writes status through `can_move()`, so a late event from the
cluster can never move a finished video backwards. See docs/status.md.
"""

from __future__ import annotations

from enum import StrEnum


class VideoStatus(StrEnum):
    """Lifecycle of a video, as the OpenAI Videos API names it."""

    queued = "queued"  # accepted; waiting for a runner slot or Kueue admission
    in_progress = "in_progress"  # a job process/pod is working on it
    completed = "completed"  # the MP4 and its result record are in object storage
    failed = "failed"  # ended without a video; `error` says why
    cancelled = "cancelled"  # stopped by a user before it finished

    def is_terminal(self) -> bool:
        """No further transition is possible."""
        return self in (VideoStatus.completed, VideoStatus.failed, VideoStatus.cancelled)

    def is_active(self) -> bool:
        """Waiting or running."""
        return not self.is_terminal()


_ALLOWED: dict[VideoStatus, set[VideoStatus]] = {
    VideoStatus.queued: {VideoStatus.in_progress, VideoStatus.failed, VideoStatus.cancelled},
    # in_progress -> queued: preempted, evicted or its process died; it will run again.
    VideoStatus.in_progress: {VideoStatus.queued, VideoStatus.completed, VideoStatus.failed, VideoStatus.cancelled},
    VideoStatus.completed: set(),
    VideoStatus.failed: set(),
    VideoStatus.cancelled: set(),
}


def can_move(src: VideoStatus, dst: VideoStatus) -> bool:
    """Whether a video may go from `src` to `dst`."""
    return dst in _ALLOWED[src]


class BatchStatus(StrEnum):
    """A batch's status, derived from the counts of its videos."""

    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"  # every video ended; some may have failed (see counts)
    cancelled = "cancelled"
