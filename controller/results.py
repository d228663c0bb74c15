"""Apply what job processes wrote to object storage (progress, results) to the DB.

Shared by the local runner and the Kubernetes watcher: the job contract is the same.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from jobcontract.errors import StorageError, StorageUnavailable
from jobcontract.records import Result, read_progress, read_result, video_keys
from jobcontract.storage import ObjectStore
from core import crud
from core.models import Video
from core.status import VideoStatus

log = logging.getLogger("t2v.controller")


def apply_progress(session: Session, *, store: ObjectStore, video: Video) -> bool:
    """Copy the live percentage of a running video; it never goes down within an attempt."""
    if video.status != VideoStatus.in_progress:
        return False
    try:
        progress = read_progress(store, video.id)
    except StorageError:  # progress is best effort; the result decides
        return False
    if progress is None or progress.attempt != video.attempt or progress.percent <= video.progress:
        return False
    video.progress = progress.percent
    session.add(video)
    return True


def apply_result(session: Session, *, video: Video, result: Result) -> bool:
    """Finish a video from its final result record; False if the row cannot move (already terminal)."""
    if result.status == "succeeded":
        return crud.transition(
            session, video=video, to=VideoStatus.completed, reason="result record: succeeded",
            bytes=result.bytes, sha256=result.sha256, gpu=result.gpu, timings=result.timings or {},
            job_name=None, error_code=None, error_message=None,
        )
    return crud.transition(
        session, video=video, to=VideoStatus.failed, reason=f"result record: {result.error_code}",
        error_code=result.error_code or "generation_failed",
        error_message=result.error_message or "the job reported a failure without a message",
        timings=result.timings or {}, job_name=None,
    )


def settle(session: Session, *, store: ObjectStore, video: Video, exit_reason: str, retry_allowed: bool,
           max_attempts: int) -> str:
    """Decide a video's fate after its job ended: completed/failed from its result, else retry or fail.

    Returns what happened: 'completed', 'failed', 'requeued', 'discarded' (already terminal).
    """
    if VideoStatus(video.status).is_terminal():
        if video.status == VideoStatus.cancelled:
            try:
                discard_outputs(store, video.id)
            except StorageError as e:  # the janitor deletes them when the video expires
                log.warning("could not delete a cancelled video's files", extra={"video_id": video.id,
                                                                                  "error": str(e)})
        crud.transition(session, video=video, to=VideoStatus(video.status), reason="", job_name=None)
        return "discarded"
    unreadable: StorageError | None = None
    try:
        result = read_result(store, video.id)
    except StorageError as e:
        # Storage down: we cannot know whether it finished. Count the attempt; a later one (or the
        # attempt budget) settles it, so a dead storage never leaves a video in progress forever.
        result, unreadable, exit_reason = None, e, f"{exit_reason}; its result could not be read: {e}"
    if result is not None and result.is_final:
        apply_result(session, video=video, result=result)
        return str(video.status)
    last = result.error_message if result is not None else exit_reason
    if retry_allowed and video.attempt < max_attempts:
        requeued = crud.transition(session, video=video, to=VideoStatus.queued,
                                   reason=f"attempt {video.attempt} ended without a result ({last}); queued again",
                                   job_name=None)
        return "requeued" if requeued else "discarded"  # refused: cancelled meanwhile; the next pass tidies it
    if result is not None and result.error_code:
        code = result.error_code
    else:  # the storage outage is the reason the user needs, not that a process ended
        code = "storage_unavailable" if isinstance(unreadable, StorageUnavailable) else "job_failed"
    if not crud.transition(session, video=video, to=VideoStatus.failed, reason=f"gave up: {last}", error_code=code,
                           error_message=f"{last} (after {video.attempt} attempt{'s' if video.attempt != 1 else ''})",
                           job_name=None):
        return "discarded"  # cancelled meanwhile; the next pass tidies it
    try:  # an MP4 uploaded before the result write failed must not outlive its failed row
        discard_outputs(store, video.id)
    except StorageError as e:  # storage still down: the janitor deletes them when the video expires
        log.warning("could not delete a failed video's files", extra={"video_id": video.id, "error": str(e)})
    return "failed"


def discard_outputs(store: ObjectStore, video_id: str) -> None:
    """Remove a cancelled or failed video's files so storage and DB agree (the janitor retries if storage is down)."""
    for key in video_keys(video_id).values():
        store.delete(key)
