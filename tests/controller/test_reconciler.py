"""The generic loop over a fake backend: claim, make, start, settle, re-create, cancel and postpone,
without a process or a cluster (the backends' own tests run the real thing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from controller.backend import Made, Postponed, View
from controller.metrics import RunMetrics
from controller.reconciler import Reconciler
from controller.table import Phase, Seen
from core.db import session_for
from core.models import Video
from core.settings import Settings
from tests.controller.test_local_runner import submit


class FakeBackend:
    """Units that do what the test says: `seen[name]` is what observe reports for every video."""

    noun = "fake unit"
    concurrency = 1
    stop_on_any_cancel = False

    def __init__(self) -> None:
        self.made: list[str] = []
        self.cancelled: list[str] = []
        self.seen: dict[str, Seen] = {}
        self.postpone = False

    def capacity(self) -> None:
        return None

    def waiting_limit(self) -> int:
        return 100

    def units(self, waiting: list[Video], free: int | None) -> list[list[Video]]:
        return [[v] for v in waiting]

    def unit_name(self, videos: list[Video]) -> str:
        return f"fake-{videos[0].id}-{videos[0].attempt + 1}"

    def prepare(self, name: str, videos: list[Video]) -> Callable[[], Made]:
        def make() -> Made:
            if self.postpone:
                raise Postponed("storage is down")
            self.made.append(name)
            self.seen.setdefault(name, Seen(Phase.waiting, "waiting for admission"))
            return Made(created=True)
        return make

    def observe(self, name: str, videos: list[Video]) -> View:
        seen = self.seen.get(name, Seen(Phase.missing, f"its unit {name} disappeared"))
        return View(seen={v.id: seen for v in videos}, finished=seen.phase == Phase.ended)

    def cancel(self, name: str, reason: str) -> None:
        self.cancelled.append(name)
        self.seen[name] = Seen(Phase.ended, reason)

    def positions(self, queued: list[Video]) -> None:
        return None

    def keep_only(self, names: set[str]) -> None:
        pass


@pytest.fixture
def loop(api: TestClient, run_settings: Settings) -> tuple[Reconciler, FakeBackend]:
    backend = FakeBackend()
    return Reconciler(run_settings, api.app.state.store, backend, metrics=RunMetrics()), backend


def step(loop: Reconciler) -> None:
    with session_for(loop.settings.db_url) as session:
        loop.step(session)


def row(loop: Reconciler, vid: str) -> Video:
    with session_for(loop.settings.db_url) as session:
        return session.exec(select(Video).where(Video.id == vid)).one()


def test_a_unit_is_made_then_admitted_then_its_end_without_result_queues_the_video_again(loop, api) -> None:
    reconciler, backend = loop
    vid = submit(api)
    step(reconciler)
    (name,) = backend.made
    v = row(reconciler, vid)
    assert (v.status, v.job_name, v.attempt) == ("queued", name, 1)
    backend.seen[name] = Seen(Phase.running, "admitted")
    step(reconciler)
    assert row(reconciler, vid).status == "in_progress"
    backend.seen[name] = Seen(Phase.ended, "exit 1")
    step(reconciler)  # settled (no result record: queued again), then dispatched as attempt 2
    v = row(reconciler, vid)
    assert (v.status, v.attempt) == ("queued", 2) and v.job_name != name and len(backend.made) == 2


def test_a_unit_claimed_but_never_made_is_made_under_the_same_name(loop, api) -> None:
    reconciler, backend = loop
    vid = submit(api)
    step(reconciler)
    (name,) = backend.made
    del backend.seen[name]  # the process died between the claim and the unit
    step(reconciler)
    assert backend.made == [name, name] and row(reconciler, vid).job_name == name


def test_cancelling_every_video_stops_the_unit_and_frees_the_rows(loop, api) -> None:
    reconciler, backend = loop
    vid = submit(api)
    step(reconciler)
    (name,) = backend.made
    backend.seen[name] = Seen(Phase.running, "admitted")
    step(reconciler)
    assert api.post(f"/v1/videos/{vid}/cancel").status_code == 200
    step(reconciler)
    v = row(reconciler, vid)
    assert backend.cancelled == [name] and (v.status, v.job_name) == ("cancelled", None)


def test_a_postponed_unit_spends_no_attempt_and_pauses_dispatch(loop, api) -> None:
    reconciler, backend = loop
    backend.postpone = True
    vid = submit(api)
    step(reconciler)
    v = row(reconciler, vid)
    assert (v.status, v.job_name, v.attempt) == ("queued", None, 0)
    backend.postpone = False
    step(reconciler)  # within the pause: nothing is claimed
    assert backend.made == [] and row(reconciler, vid).job_name is None
