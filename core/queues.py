"""The queues, in one table: their names, GPU quotas and which videos go to each.

Routing (webapp/submit.py), the Job's labels and LocalQueue (controller/kube/jobs.py), the settings'
defaults, the metrics' label values and the benchmarks all read this table. kueue/ is what an operator
applies to the cluster, so it cannot import it: tests/core/test_queues.py fails when the two disagree
(every ClusterQueue's nominal quota, the most it can hold with what its cohort lends, the LocalQueues).
Resize the node: change the nominal quotas here and in kueue/20-clusterqueues.yaml together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Queue:
    """One queue: a ClusterQueue in kueue/ and the LocalQueue of the default tenant that leads to it."""

    name: str  # on the video row, the Job's t2v.io/queue label, and the default tenant's LocalQueue
    cluster_queue: str  # kueue/20-clusterqueues.yaml
    nominal_gpus: int  # its share of the node, which it always gets back (docs/decisions.md)
    max_gpus: int  # nominal plus what the rest of the cohort may lend it: the most one Job may ask for
    # Videos whose estimated GPU time on the cost model is at most this go here (None: the rest); the
    # default of `T2V_LONG_QUEUE_THRESHOLD_SECONDS`.
    max_cost_seconds: float | None


# 8 GPUs (one 8 x H100 node): 4 each, and each may borrow all of the other's (no lendingLimit).
# Short before long: route() takes the first queue a video's estimate fits.
QUEUES: tuple[Queue, ...] = (
    Queue("short", "t2v-short", nominal_gpus=4, max_gpus=8, max_cost_seconds=120.0),
    Queue("long", "t2v-long", nominal_gpus=4, max_gpus=8, max_cost_seconds=None),
)
BY_NAME: dict[str, Queue] = {q.name: q for q in QUEUES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
CLUSTER_GPUS = sum(q.nominal_gpus for q in QUEUES)  # all nominal quota: the node's GPUs
SHORT, LONG = QUEUES[0], QUEUES[-1]


def route(cost_seconds: float, long_threshold_seconds: float = SHORT.max_cost_seconds or 0.0) -> str:
    """The queue a video estimated at `cost_seconds` of GPU time goes to, so long work cannot block
    interactive work. The threshold is a setting (`T2V_LONG_QUEUE_THRESHOLD_SECONDS`)."""
    return SHORT.name if cost_seconds <= long_threshold_seconds else LONG.name
