"""Queue places from Kueue's pending list, mended for the head Kueue is trying to admit.

Kueue's answer is given here as data: on the real plane the torn list (a ClusterQueue's head out of
the queue during a scheduling cycle) comes and goes within milliseconds, so a test there could not
choose it. tests/cluster/test_t2v_cluster_mode.py saw it: two waiting videos both at place 1.
"""

from __future__ import annotations

from controller.kube.backend import kueue_places
from core.models import Video
from core.status import VideoStatus


def _videos(*specs: tuple[str, str, str | None]) -> tuple[list[Video], dict[str, str | None]]:
    """(video id, queue, Workload) -> queued videos and the Workload of each."""
    videos = [Video(id=vid, queue=queue, status=VideoStatus.queued, job_name=f"job-{vid}") for vid, queue, _ in specs]
    return videos, {vid: wl for vid, _, wl in specs}


def test_a_full_list_is_taken_as_it_is():
    videos, wl = _videos(("a", "short", "wl-a"), ("b", "short", "wl-b"), ("c", "long", "wl-c"))
    assert kueue_places(videos, wl, {"wl-a": 1, "wl-b": 2, "wl-c": 1}) == {"a": 1, "b": 2, "c": 1}


def test_the_head_in_a_scheduling_cycle_is_first_and_the_rest_one_further_back():
    videos, wl = _videos(("a", "short", "wl-a"), ("b", "short", "wl-b"), ("c", "short", "wl-c"),
                         ("d", "long", "wl-d"), ("e", "long", "wl-e"))
    # short's head (wl-a) is out of the list and the others are counted from wl-b; long's is whole.
    assert kueue_places(videos, wl, {"wl-b": 1, "wl-c": 2, "wl-d": 1, "wl-e": 2}) == {
        "a": 1, "b": 2, "c": 3, "d": 1, "e": 2}


def test_a_batch_jobs_videos_share_their_workloads_place():
    videos, wl = _videos(("a1", "long", "wl-a"), ("a2", "long", "wl-a"), ("b1", "long", "wl-b"))
    assert kueue_places(videos, wl, {"wl-b": 1}) == {"a1": 1, "a2": 1, "b1": 2}


def test_what_cannot_be_the_one_head_is_left_alone():
    # Two Workloads of one ClusterQueue absent: not one head in flight; they get no place from Kueue.
    videos, wl = _videos(("a", "short", "wl-a"), ("b", "short", "wl-b"), ("c", "short", "wl-c"))
    assert kueue_places(videos, wl, {"wl-c": 1}) == {"a": None, "b": None, "c": 1}
    # A Job whose Workload Kueue has not made yet is not a head either.
    videos, wl = _videos(("a", "short", None), ("b", "short", "wl-b"))
    assert kueue_places(videos, wl, {"wl-b": 1}) == {"a": None, "b": 1}
    # Nothing of that ClusterQueue listed: nothing to count from.
    videos, wl = _videos(("a", "short", "wl-a"), ("c", "long", "wl-c"))
    assert kueue_places(videos, wl, {"wl-c": 1}) == {"a": None, "c": 1}
