"""Cluster-mode metrics read API server stamps, which are whole seconds, as the middle of the span
the stamp leaves open: a Job admitted within the second its video was submitted is not a 0 s wait,
and a lag is not read 0.5 s long on average."""

from __future__ import annotations

import time

import pytest

from controller.metrics import ControllerMetrics, stamped
from core.models import Video


def test_a_stamp_before_the_submission_is_read_between_the_submission_and_the_second_end() -> None:
    # Submitted at .6 of second 100, admitted at a stamp of 100: it happened in [100.6, 101).
    assert stamped(100.0, after=100.6, before=130.0) == pytest.approx(100.8)


def test_a_stamp_seen_within_its_second_ends_where_it_was_seen() -> None:
    # Stamped 200, seen at 200.4: it happened in [200, 200.4].
    assert stamped(200.0, after=0.0, before=200.4) == pytest.approx(200.2)
    assert stamped(200.0, after=0.0, before=500.0) == pytest.approx(200.5)


def test_a_stamp_more_than_a_second_before_the_submission_is_the_submission() -> None:
    # Clock skew between the API server and the web app: never a negative or invented wait.
    assert stamped(90.0, after=100.0, before=130.0) == 100.0


def observed(m: ControllerMetrics, name: str, queue: str) -> tuple[float, float]:
    labels = {"queue": queue}
    return (m.registry.get_sample_value(f"{name}_count", labels), m.registry.get_sample_value(f"{name}_sum", labels))


def test_a_sub_second_admission_is_counted_as_more_than_zero() -> None:
    m = ControllerMetrics()
    now = time.time()
    video = Video(id="vid_1", prompt="p", model="tiny", queue="short", created_at=now - 0.3)
    whole = float(int(now - 0.3))  # the API server's startTime of a Job unsuspended 0.1 s after submit
    m.started(video, first=True, admitted_at=whole)
    m.running(video, since=whole)
    for name in ("t2v_submit_to_admission_seconds", "t2v_submit_to_running_seconds"):
        count, total = observed(m, name, "short")
        assert count == 1 and 0 < total < 1, name


def test_lag_is_read_from_the_middle_of_the_stamped_second() -> None:
    m = ControllerMetrics()
    m.watched("admitted", at=1000.0, now=1003.0)
    assert m.registry.get_sample_value("t2v_watcher_lag_seconds_sum", {"event": "admitted"}) == pytest.approx(2.5)
