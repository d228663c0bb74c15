"""A status move written from an object older than its row is refused: the controller reads a pass's rows
once, and a cancel from the API may land in between (the chaos run's 'cancelled' then 'completed')."""

from __future__ import annotations

import time

from sqlmodel import Session

from core import crud, queries
from core.db import migrate, session_for
from core.models import Video
from core.status import VideoStatus


def _running_video(db_url: str) -> str:
    migrate(db_url)
    now = time.time()
    with session_for(db_url) as s:
        s.add(Video(id="video_race1", status="in_progress", model="tiny", prompt="p", num_frames=31, width=432,
                    height=240, fps=30, seed=1, num_inference_steps=8, guidance_scale=4.5, created_at=now,
                    updated_at=now, job_name="job-a", attempt=1))
        s.commit()
    return "video_race1"


def _get(session: Session, vid: str) -> Video:
    return queries.get_video(session, video_id=vid, tenant=None)


def _terminal_events(db_url: str, vid: str) -> list[str]:
    with session_for(db_url, write=False) as s:
        return [e.to_status for e in queries.events(s, video_id=vid) if VideoStatus(e.to_status).is_terminal()]


def test_a_result_applied_to_a_row_cancelled_meanwhile_is_refused(db_url: str) -> None:
    vid = _running_video(db_url)
    with session_for(db_url) as controller:
        stale = _get(controller, vid)
        controller.commit()  # the pass read its rows; later units are applied in later transactions
        with session_for(db_url) as api:
            assert crud.transition(api, video=_get(api, vid), to=VideoStatus.cancelled, reason="by user")
            api.commit()
        assert stale.status == VideoStatus.in_progress  # the controller's copy does not know yet
        assert not crud.transition(controller, video=stale, to=VideoStatus.completed, reason="result record",
                                   bytes=10, job_name=None)
        assert stale.status == VideoStatus.cancelled and stale.bytes is None  # reloaded, nothing of the result
        controller.commit()
    assert _terminal_events(db_url, vid) == ["cancelled"]
    with session_for(db_url, write=False) as s:
        row = _get(s, vid)
        assert (row.status, row.job_name) == ("cancelled", "job-a")  # the next pass settles it as cancelled


def test_a_cancel_read_before_the_video_finished_is_refused(db_url: str) -> None:
    vid = _running_video(db_url)
    with session_for(db_url) as api:
        stale = _get(api, vid)
        api.commit()
        with session_for(db_url) as controller:
            assert crud.transition(controller, video=_get(controller, vid), to=VideoStatus.completed,
                                   reason="result record", job_name=None)
            controller.commit()
        assert not crud.transition(api, video=stale, to=VideoStatus.cancelled, reason="by user")
        assert stale.status == VideoStatus.completed
        api.commit()
    assert _terminal_events(db_url, vid) == ["completed"]


def test_a_row_deleted_meanwhile_is_let_go_of(db_url: str) -> None:
    vid = _running_video(db_url)
    with session_for(db_url) as controller:
        stale = _get(controller, vid)
        controller.commit()
        with session_for(db_url) as api:
            crud.delete_video(api, video=_get(api, vid))
            api.commit()
        assert not crud.transition(controller, video=stale, to=VideoStatus.completed, reason="result record")
        controller.commit()  # nothing is written for the deleted row, and nothing fails
    assert _terminal_events(db_url, vid) == []
