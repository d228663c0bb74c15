"""The queue table (core/queues.py) is what kueue/ applies, and everything else reads the table.

kueue/ is applied to the cluster by an operator, so nothing imports it: these tests fail when a quota,
a name or a LocalQueue there stops agreeing with the table the service routes and builds Jobs by."""

from __future__ import annotations

import yaml

from controller.settings import ControllerSettings
from core import queues
from core.settings import Settings
from tests.support.kueue_quota import KUEUE_DIR, gpu_quotas, max_gpus


def test_kueues_cluster_queues_are_the_tables() -> None:
    quotas = gpu_quotas()
    assert set(quotas) == {q.cluster_queue for q in queues.QUEUES}
    for q in queues.QUEUES:
        assert quotas[q.cluster_queue].nominal == q.nominal_gpus, q.name
        assert max_gpus(q.cluster_queue, quotas) == q.max_gpus, q.name  # what the cohort lends it
    assert queues.CLUSTER_GPUS == sum(q.nominal for q in quotas.values())


def test_kueues_local_queues_lead_each_queue_to_its_cluster_queue() -> None:
    docs = [d for d in yaml.safe_load_all((KUEUE_DIR / "40-localqueues.yaml").read_text()) if d]
    local = {d["metadata"]["name"]: d["spec"]["clusterQueue"] for d in docs if d["kind"] == "LocalQueue"}
    assert local == {q.name: q.cluster_queue for q in queues.QUEUES}


def test_a_change_to_kueues_quota_is_caught(tmp_path) -> None:
    """The agreement test reads the files: a nominal quota edited in kueue/ alone shows up."""
    for path in KUEUE_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text().replace("nvidia.com/gpu, nominalQuota: 4",
                                                                   "nvidia.com/gpu, nominalQuota: 6", 1))
    assert gpu_quotas(tmp_path)[queues.SHORT.cluster_queue].nominal == 6 != queues.SHORT.nominal_gpus


def test_settings_take_their_defaults_from_the_table(tmp_path) -> None:
    settings = ControllerSettings(data_dir=tmp_path)
    assert settings.cluster_gpus == queues.CLUSTER_GPUS
    assert settings.long_queue_threshold_seconds == queues.SHORT.max_cost_seconds
    for q in queues.QUEUES:
        assert settings.queue(q.name).local_queue == q.name
        assert settings.queue(q.name).cluster_queue == q.cluster_queue
        assert settings.queue(q.name).max_gpus == q.max_gpus


def test_routing_goes_by_estimated_gpu_time() -> None:
    threshold = Settings().long_queue_threshold_seconds
    assert queues.route(threshold, threshold) == queues.SHORT.name
    assert queues.route(threshold + 0.01, threshold) == queues.LONG.name
    assert queues.route(5.0, 1.0) == queues.LONG.name  # the threshold is a setting
