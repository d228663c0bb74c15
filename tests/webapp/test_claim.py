"""Claiming videos for a Job: one statement per Job, and a video is never taken twice."""

from __future__ import annotations

import time

from sqlmodel import Session, select

from core import crud
from core.db import engine_for, migrate
from core.models import Video


def _queued(session: Session, n: int) -> list[Video]:
    now = time.time()
    videos = [Video(id=f"video_c{i}", status="queued", model="tiny", prompt="p", num_frames=31, width=432,
                    height=240, fps=30, seed=i, num_inference_steps=8, guidance_scale=4.5, created_at=now,
                    updated_at=now) for i in range(n)]
    session.add_all(videos)
    session.commit()
    return videos


def test_a_claim_takes_only_what_nobody_else_took_and_knows_what_it_wrote(db_url: str) -> None:
    migrate(db_url)
    engine = engine_for(db_url)
    with Session(engine, expire_on_commit=False) as mine, Session(engine) as theirs:
        videos = _queued(mine, 4)
        # Another dispatcher (a previous leader) took video 1 meanwhile, video 2 had runs that `mine`
        # did not see, and video 3 was cancelled.
        other = theirs.exec(select(Video).where(Video.id.in_(["video_c1", "video_c2", "video_c3"]))).all()
        assert [v.id for v in crud.claim_unit(theirs, videos=[o for o in other if o.id == "video_c1"],
                                              job_name="job-theirs", now=1.0)] == ["video_c1"]
        next(o for o in other if o.id == "video_c2").attempt = 2
        next(o for o in other if o.id == "video_c3").status = "cancelled"
        theirs.commit()

        taken = crud.claim_unit(mine, videos=videos, job_name="job-mine", now=2.0)
        assert [v.id for v in taken] == ["video_c0", "video_c2"]
        # The objects carry what the statement wrote (attempt from the database, not the stale copy)...
        assert [(v.job_name, v.attempt, v.updated_at) for v in taken] == [("job-mine", 1, 2.0), ("job-mine", 3, 2.0)]
        assert not mine.dirty  # ...as committed state: no second write is pending
        mine.commit()

    with Session(engine) as check:
        rows = {v.id: (v.job_name, v.attempt) for v in check.exec(select(Video))}
    assert rows == {"video_c0": ("job-mine", 1), "video_c1": ("job-theirs", 1), "video_c2": ("job-mine", 3),
                    "video_c3": (None, 0)}


def test_nothing_left_to_take_gives_an_empty_claim(db_url: str) -> None:
    migrate(db_url)
    with Session(engine_for(db_url), expire_on_commit=False) as s:
        videos = _queued(s, 2)
        assert len(crud.claim_unit(s, videos=videos, job_name="job-a", now=1.0)) == 2
        assert crud.claim_unit(s, videos=videos, job_name="job-b", now=2.0) == []
        s.commit()
