"""What a video's status does next, given what its backend saw of its unit of work: one pure table.

Both backends (local job processes, Kubernetes Jobs) read their units into a `Seen` per video (a
`Phase` plus the backend's own words); `plan` maps those and the rows' statuses to `Step`s that the
generic loop (controller/reconciler.py) carries out. No I/O here, so tests/controller/test_table.py
walks every row; the transitions themselves are drawn in docs/status.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.status import VideoStatus


class Phase(StrEnum):
    """What a backend saw of the part of a unit that holds one video."""

    running = "running"  # admitted and working: Kueue unsuspended the Job, or the job process lives
    waiting = "waiting"  # made, not admitted: a suspended Job (before admission, or preempted)
    pending = "pending"  # admitted, nothing running yet (an unsuspended Job without pods): nothing to write
    ended = "ended"  # its process, its completion index or its whole Job ended: the result record decides
    stuck = "stuck"  # cannot start and will not by itself (an image that cannot be pulled)
    missing = "missing"  # no such unit: claimed and never made (the process died in between), or deleted
    lost = "lost"  # the unit died without a word: a job process whose lock nobody holds after a restart

    def is_alive(self) -> bool:
        """The unit still holds (or waits for) resources: cancelling means stopping it."""
        return self in (Phase.running, Phase.waiting, Phase.pending, Phase.stuck)


class Do(StrEnum):
    """What the loop does to one video row."""

    wait = "wait"  # nothing to write
    start = "start"  # queued -> in_progress: admitted; then as follow
    follow = "follow"  # copy its progress and node
    requeue = "requeue"  # in_progress -> queued: the scheduler stopped the unit, which resumes later
    settle = "settle"  # the attempt ended: its result record, else retry within the budget, else fail
    create = "create"  # make the unit under the name already on the rows


@dataclass(frozen=True)
class Seen:
    """A backend's view of one video's part of a unit."""

    phase: Phase
    reason: str = ""  # the backend's words: why it ended, why Kueue stopped it
    retry: bool = True  # ended: whether another attempt can help (not after a bad item or setup)
    cause: str = "unknown"  # waiting after running: Kueue's reason, a metric label
    node: str | None = None  # running: where
    running_since: float | None = None  # running: when its pod or process started (unix seconds)


@dataclass(frozen=True)
class Step:
    """One video's next step."""

    do: Do
    reason: str = ""
    retry: bool = True  # settle: another attempt is allowed (within the budget)
    spare_attempt: bool = False  # settle: the unit was lost with the server, not by the video: one more try
    late_start: bool = False  # settle: still queued, so it ran and ended between two looks: count its start


@dataclass(frozen=True)
class Plan:
    """The steps of a unit's videos (in their order), after stopping the unit if `cancel` says why."""

    steps: list[Step] = field(default_factory=list)
    cancel: str | None = None


# (phase, status) -> what to do; "done" stands for every terminal status.
ROWS: dict[tuple[Phase, str], Do] = {
    (Phase.running, "queued"): Do.start,
    (Phase.running, "in_progress"): Do.follow,
    (Phase.running, "done"): Do.wait,  # a cancelled video in a live batch: its part ends with the unit
    (Phase.waiting, "queued"): Do.wait,
    (Phase.waiting, "in_progress"): Do.requeue,
    (Phase.waiting, "done"): Do.wait,
    (Phase.pending, "queued"): Do.wait,
    (Phase.pending, "in_progress"): Do.wait,
    (Phase.pending, "done"): Do.wait,
    (Phase.ended, "queued"): Do.settle,  # with late_start
    (Phase.ended, "in_progress"): Do.settle,
    (Phase.ended, "done"): Do.settle,  # forgets the unit; a cancelled video's files go
    (Phase.stuck, "queued"): Do.settle,  # without retry: the unit is deleted (Plan.cancel)
    (Phase.stuck, "in_progress"): Do.settle,
    (Phase.stuck, "done"): Do.wait,
    (Phase.missing, "queued"): Do.create,  # only when every active video is queued (see plan)
    (Phase.missing, "in_progress"): Do.settle,
    (Phase.missing, "done"): Do.settle,
    (Phase.lost, "queued"): Do.settle,
    (Phase.lost, "in_progress"): Do.settle,
    (Phase.lost, "done"): Do.settle,
}


def _key(status: VideoStatus) -> str:
    return "done" if status.is_terminal() else status.value


def step(seen: Seen, status: VideoStatus) -> Step:
    """One row of the table: what happens to a video in `status` whose unit part is `seen`."""
    do = ROWS[(seen.phase, _key(status))]
    if do != Do.settle:
        return Step(do, seen.reason)
    if status.is_terminal():
        return Step(Do.settle, seen.reason or "cancelled", retry=False)
    return Step(Do.settle, seen.reason, retry=seen.retry and seen.phase != Phase.stuck,
                spare_attempt=seen.phase == Phase.lost, late_start=status == VideoStatus.queued
                and seen.phase == Phase.ended)


def plan(rows: list[tuple[Seen, VideoStatus]], *, stop_on_any_cancel: bool = False) -> Plan:
    """The steps for one unit's videos; the rules that look at the unit as a whole come first.

    - No active video left (all cancelled): stop the unit if it lives; settle (discard) every row.
    - `stop_on_any_cancel` (a local job process runs its items one after another) and one video
      cancelled while the unit lives: stop it; every row settles, the others with a retry.
    - A missing unit is made again under its name only if none of its videos started; else they settle.
    - A stuck unit is stopped; its active videos fail with the reason it cannot start.
    """
    statuses = [VideoStatus(s) for _, s in rows]
    alive = any(seen.phase.is_alive() for seen, _ in rows)
    active = [s for s in statuses if s.is_active()]
    if not active:
        return Plan([Step(Do.settle, "cancelled", retry=False) for _ in rows],
                    cancel="its videos were cancelled" if alive else None)
    if stop_on_any_cancel and alive and VideoStatus.cancelled in statuses:
        why = "a video of this job was cancelled"
        return Plan([Step(Do.settle, why, retry=s.is_active()) for s in statuses], cancel=why)
    steps = [step(seen, s) for seen, s in rows]
    if any(st.do == Do.create for st in steps) and any(s != VideoStatus.queued for s in active):
        steps = [Step(Do.settle, st.reason) if st.do == Do.create else st for st in steps]
    stuck = next((seen.reason for seen, _ in rows if seen.phase == Phase.stuck), None)
    return Plan(steps, cancel=stuck)
