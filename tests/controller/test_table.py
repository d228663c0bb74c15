"""The pure table from what a backend saw of a unit to each video's next step: every row, then the
rules that look at a unit as a whole."""

from __future__ import annotations

import pytest

from controller.table import ROWS, Do, Phase, Plan, Seen, Step, plan, step
from core.status import VideoStatus

Q, RUN, DONE, CANCELLED = VideoStatus.queued, VideoStatus.in_progress, VideoStatus.completed, VideoStatus.cancelled

# (phase, status, expected step); every (phase, status kind) pair of the table appears once.
CASES = [
    (Phase.running, Q, Step(Do.start, "admitted")),
    (Phase.running, RUN, Step(Do.follow, "admitted")),
    (Phase.running, CANCELLED, Step(Do.wait, "admitted")),
    (Phase.waiting, Q, Step(Do.wait, "why")),
    (Phase.waiting, RUN, Step(Do.requeue, "why")),
    (Phase.waiting, CANCELLED, Step(Do.wait, "why")),
    (Phase.pending, Q, Step(Do.wait, "why")),
    (Phase.pending, RUN, Step(Do.wait, "why")),
    (Phase.pending, DONE, Step(Do.wait, "why")),
    (Phase.ended, Q, Step(Do.settle, "exit 1", late_start=True)),
    (Phase.ended, RUN, Step(Do.settle, "exit 1")),
    (Phase.ended, CANCELLED, Step(Do.settle, "exit 1", retry=False)),
    (Phase.stuck, Q, Step(Do.settle, "ImagePullBackOff", retry=False)),
    (Phase.stuck, RUN, Step(Do.settle, "ImagePullBackOff", retry=False)),
    (Phase.stuck, CANCELLED, Step(Do.wait, "ImagePullBackOff")),
    (Phase.missing, Q, Step(Do.create, "gone")),
    (Phase.missing, RUN, Step(Do.settle, "gone")),
    (Phase.missing, CANCELLED, Step(Do.settle, "gone", retry=False)),
    (Phase.lost, Q, Step(Do.settle, "died", spare_attempt=True)),
    (Phase.lost, RUN, Step(Do.settle, "died", spare_attempt=True)),
    (Phase.lost, DONE, Step(Do.settle, "died", retry=False)),
]
REASONS = {Phase.running: "admitted", Phase.waiting: "why", Phase.pending: "why", Phase.ended: "exit 1",
           Phase.stuck: "ImagePullBackOff", Phase.missing: "gone", Phase.lost: "died"}


def test_the_cases_cover_every_row_of_the_table() -> None:
    kinds = {(phase, "done" if s.is_terminal() else s.value) for phase, s, _ in CASES}
    assert kinds == set(ROWS) and len(CASES) == len(ROWS)


@pytest.mark.parametrize(("phase", "status", "expected"), CASES,
                         ids=[f"{p.value}-{s.value}->{e.do.value}" for p, s, e in CASES])
def test_row(phase: Phase, status: VideoStatus, expected: Step) -> None:
    assert step(Seen(phase, REASONS[phase]), status) == expected


def test_an_end_no_retry_can_help_settles_without_retry() -> None:
    assert step(Seen(Phase.ended, "bad item", retry=False), RUN) == Step(Do.settle, "bad item", retry=False)


def seen(phase: Phase, reason: str = "r") -> Seen:
    return Seen(phase, reason)


UNIT_CASES = {
    "all cancelled, unit alive: stop it, discard every row": (
        [(seen(Phase.running), CANCELLED), (seen(Phase.waiting), CANCELLED)], False,
        Plan([Step(Do.settle, "cancelled", retry=False)] * 2, cancel="its videos were cancelled")),
    "all cancelled, unit ended: discard every row, nothing to stop": (
        [(seen(Phase.ended), CANCELLED), (seen(Phase.ended), DONE)], False,
        Plan([Step(Do.settle, "cancelled", retry=False)] * 2)),
    "all cancelled, unit missing: discard": (
        [(seen(Phase.missing), CANCELLED)], False, Plan([Step(Do.settle, "cancelled", retry=False)])),
    "one cancelled in a live local job: stop it, the others run again": (
        [(seen(Phase.running), CANCELLED), (seen(Phase.running), RUN)], True,
        Plan([Step(Do.settle, "a video of this job was cancelled", retry=False),
              Step(Do.settle, "a video of this job was cancelled")], cancel="a video of this job was cancelled")),
    "one cancelled in a live Job: the others go on": (
        [(seen(Phase.running), CANCELLED), (seen(Phase.running), RUN)], False,
        Plan([Step(Do.wait, "r"), Step(Do.follow, "r")])),
    "one cancelled in an ended local job: settle as ended": (
        [(seen(Phase.ended), CANCELLED), (seen(Phase.ended), RUN)], True,
        Plan([Step(Do.settle, "r", retry=False), Step(Do.settle, "r")])),
    "missing, every active video queued: made again": (
        [(seen(Phase.missing), Q), (seen(Phase.missing), Q), (seen(Phase.missing), CANCELLED)], False,
        Plan([Step(Do.create, "r"), Step(Do.create, "r"), Step(Do.settle, "r", retry=False)])),
    "missing after one started: every active video settles": (
        [(seen(Phase.missing), Q), (seen(Phase.missing), RUN)], False,
        Plan([Step(Do.settle, "r"), Step(Do.settle, "r")])),
    "stuck: stop the unit, fail its videos with the reason": (
        [(seen(Phase.stuck, "ErrImagePull"), Q), (seen(Phase.ended, "done"), RUN)], False,
        Plan([Step(Do.settle, "ErrImagePull", retry=False), Step(Do.settle, "done")], cancel="ErrImagePull")),
    "an index ended while others run: only its video settles": (
        [(seen(Phase.ended), RUN), (seen(Phase.running), RUN), (seen(Phase.running), Q)], False,
        Plan([Step(Do.settle, "r"), Step(Do.follow, "r"), Step(Do.start, "r")])),
    "preempted: running videos queue again, waiting ones wait": (
        [(seen(Phase.waiting), RUN), (seen(Phase.waiting), Q)], False,
        Plan([Step(Do.requeue, "r"), Step(Do.wait, "r")])),
}


@pytest.mark.parametrize(("rows", "any_cancel", "expected"), UNIT_CASES.values(), ids=UNIT_CASES.keys())
def test_unit_rule(rows: list[tuple[Seen, VideoStatus]], any_cancel: bool, expected: Plan) -> None:
    assert plan(rows, stop_on_any_cancel=any_cancel) == expected
