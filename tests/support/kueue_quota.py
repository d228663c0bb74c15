"""The GPUs kueue/'s ClusterQueues give each queue, read from the files an operator applies.

The service reads its queue table (core/queues.py), never kueue/ (applied to the cluster separately);
tests/core/test_queues.py checks the two agree with what this module reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

KUEUE_DIR = Path(__file__).resolve().parents[2] / "kueue"
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class GpuQuota:
    """One ClusterQueue's GPU quota (flavor h100) and its cohort."""

    nominal: int
    cohort: str | None
    lending_limit: int | None  # None: the cohort may borrow all of `nominal`
    borrowing_limit: int | None  # None: it may borrow whatever the cohort lends

    @property
    def lendable(self) -> int:
        return self.nominal if self.lending_limit is None else min(self.nominal, self.lending_limit)


def gpu_quotas(kueue_dir: Path = KUEUE_DIR) -> dict[str, GpuQuota]:
    """Every ClusterQueue in `kueue_dir` by name, with its nvidia.com/gpu quota."""
    out: dict[str, GpuQuota] = {}
    for path in sorted(kueue_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "ClusterQueue":
                continue
            spec = doc["spec"]
            gpu = next(r for g in spec["resourceGroups"] for f in g["flavors"] for r in f["resources"]
                       if r["name"] == GPU)
            out[doc["metadata"]["name"]] = GpuQuota(
                nominal=int(gpu["nominalQuota"]), cohort=spec.get("cohortName"),
                lending_limit=None if gpu.get("lendingLimit") is None else int(gpu["lendingLimit"]),
                borrowing_limit=None if gpu.get("borrowingLimit") is None else int(gpu["borrowingLimit"]))
    return out


def max_gpus(name: str, quotas: dict[str, GpuQuota] | None = None) -> int:
    """The most GPUs ClusterQueue `name` can hold at once: its nominal quota plus what the rest of
    its cohort may lend it, within its own borrowingLimit."""
    quotas = quotas if quotas is not None else gpu_quotas()
    q = quotas[name]
    lent = sum(o.lendable for n, o in quotas.items() if n != name and q.cohort and o.cohort == q.cohort)
    if q.borrowing_limit is not None:
        lent = min(lent, q.borrowing_limit)
    return q.nominal + lent
