"""What a backend must do for the generic loop (controller/reconciler.py), as Kueue's jobframework
asks of each job integration: make a unit of work for claimed videos, say what it sees of a unit,
stop one, and say how much room there is. Two adapters: controller/local (job processes) and
controller/kube (indexed Jobs under Kueue)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from controller.table import Seen
from core.models import Video


class Postponed(Exception):
    """A unit could not be made and no attempt was spent (its manifest could not be stored): its
    videos wait in the queue again, and dispatch pauses a moment instead of burning attempts."""


@dataclass(frozen=True)
class Made:
    """What making a unit did."""

    created: bool  # False: it existed already (made again after a crash) or is left to recovery
    running_since: float | None = None  # the unit runs at once (a local process): queued -> in_progress now


@dataclass
class View:
    """A backend's look at one unit: each video's part, and when the cluster says things happened."""

    seen: dict[str, Seen] = field(default_factory=dict)  # video id -> its part
    finished: bool = False  # the whole unit ended
    admitted_at: float | None = None  # unix seconds, as the API server dates them (lag metrics)
    ended_at: float | None = None
    stopped_at: float | None = None


class Backend(Protocol):
    """A place where units of work run: local job processes or Kubernetes Jobs."""

    noun: str  # how an event names a unit: "Job", "job process"
    concurrency: int  # units made side by side in one dispatch round
    stop_on_any_cancel: bool  # one cancelled video stops its unit (a local job runs items in turn)

    def capacity(self) -> int | None:
        """How many more units may start now; None when a scheduler (Kueue) admits them instead."""

    def waiting_limit(self) -> int:
        """How many waiting videos one dispatch round looks at."""

    def units(self, waiting: list[Video], free: int | None) -> list[list[Video]]:
        """Group waiting videos (oldest first) into units, given `free` room (see capacity)."""

    def unit_name(self, videos: list[Video]) -> str:
        """The unit's name, stored on its rows before it is made: the same videos give the same name."""

    def prepare(self, name: str, videos: list[Video]) -> Callable[[], Made]:
        """Read what the unit needs from the rows now; the returned call makes it (thread-safe where
        concurrency > 1; may raise Postponed)."""

    def observe(self, name: str, videos: list[Video]) -> View:
        """What the backend sees of unit `name`, whose rows are `videos`."""

    def cancel(self, name: str, reason: str) -> None:
        """Stop unit `name` and forget it; a missing unit is fine."""

    def positions(self, queued: list[Video]) -> dict[str, int | None] | None:
        """Places in line of queued videos whose units wait for admission; None: not this backend's job."""

    def keep_only(self, names: set[str]) -> None:
        """After a full pass: drop what is remembered about units no row names any more."""
