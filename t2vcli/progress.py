"""Progress of a video or a batch on stderr: in a terminal one line redrawn in place with a bar and
an ETA (rich); anywhere else (a CI log, `2>file`) a plain line only when something worth reading
changed, so a long wait writes a handful of lines instead of one per poll."""

from __future__ import annotations

import sys
import time
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LOG_STEP = 0.1  # in a log, a line per tenth of the work done (and per change of state)


class Reporter:
    """`update(done, total, state)` as often as you poll; `close()` once at the end."""

    def __init__(self, label: str, *, stream: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.label = label
        self._last: tuple[str, int] | None = None  # (state, tenths) of the last log line
        self._t0 = time.monotonic()
        self._bar: Progress | None = None
        self._task = None
        if self.interactive:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TextColumn("elapsed"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(),
                                 console=Console(file=self.stream, force_terminal=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=None, state="")

    def update(self, done: int, total: int, state: str) -> None:
        """`done` of `total` units (percent, videos), with a short text for the rest of the state."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, state=state)
            return
        tenths = int(done / total / LOG_STEP) if total else 0
        key = (state.split()[0] if state else "", tenths)
        if key != self._last:
            self._last = key
            print(f"{self.label}: {done}/{total} {state} ({time.monotonic() - self._t0:.0f} s)",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
