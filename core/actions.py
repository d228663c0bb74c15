"""User actions shared by the JSON API and the page: cancel and delete, written once."""

from __future__ import annotations

import time

from sqlmodel import Session

from jobcontract.records import video_keys
from jobcontract.storage import ObjectStore
from core import crud, queries
from core.models import Batch, Video
from core.status import VideoStatus


def delete_video(session: Session, store: ObjectStore, video: Video) -> None:
    """Cancel if active, remove row and events, then the files."""
    if VideoStatus(video.status).is_active():
        crud.transition(session, video=video, to=VideoStatus.cancelled, reason="deleted by user")
        session.commit()
    crud.delete_video(session, video=video)
    session.commit()
    # Files go after the row: a crash in between leaves orphans for the janitor, never a row without files.
    for key in video_keys(video.id).values():
        store.delete(key)


def cancel_batch(session: Session, batch: Batch) -> None:
    """Cancel every video of the batch that has not finished; finished ones stay."""
    if batch.cancelled_at is None:
        batch.cancelled_at = time.time()
        session.add(batch)
    for video in queries.active_videos(session, batch_id=batch.id):
        crud.transition(session, video=video, to=VideoStatus.cancelled, reason="batch cancelled by user")
    session.commit()
