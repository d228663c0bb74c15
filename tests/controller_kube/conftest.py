"""The `cluster_mode` fixture: controller replicas on real PostgreSQL and the test control plane."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from kubernetes import config

from controller.settings import ControllerSettings
from tests.controller_kube.kube import drop_queues, kwok_pod_annotations, make_queues
from tests.controller_kube.replicas import Replicas
from tests.plugins.cluster import ClusterHandle


@pytest.fixture
def cluster_mode(tmp_path, monkeypatch, test_cluster: ClusterHandle, k8s_namespace: str,
                 postgres_url: str) -> Iterator[tuple[ControllerSettings, Replicas]]:
    monkeypatch.setenv("KUBECONFIG", test_cluster.kubeconfig)
    config.load_kube_config(test_cluster.kubeconfig)  # for KubeLeaseApi here, as KubeJobApi does in the replicas
    queues = make_queues(test_cluster, k8s_namespace)
    env = {**os.environ, "KUBECONFIG": test_cluster.kubeconfig, "T2V_NAMESPACE": k8s_namespace,
           "T2V_DATA_DIR": str(tmp_path / "data"), "T2V_DATABASE_URL": postgres_url, "T2V_AUTH_REQUIRED": "false",
           # 3 s lease, 1 s renew: a take-over within seconds; 1 s resync bounds what a lost event costs.
           "T2V_LEASE_SECONDS": "3", "T2V_RENEW_SECONDS": "1", "T2V_RESYNC_SECONDS": "1",
           "T2V_WATCH_TIMEOUT_SECONDS": "10", "T2V_JOB_POD_ANNOTATIONS": json.dumps(kwok_pod_annotations()),
           # both LocalQueues lead to the test's one 8-GPU ClusterQueue
           "T2V_SHORT_QUEUE_MAX_GPUS": "8", "T2V_LONG_QUEUE_MAX_GPUS": "8"}
    settings = ControllerSettings(data_dir=tmp_path / "data", database_url=postgres_url, auth_required=False,
                                  namespace=k8s_namespace, short_queue_max_gpus=8, long_queue_max_gpus=8,
                                  job_pod_annotations=kwok_pod_annotations())
    replicas = Replicas(env, tmp_path)
    try:
        yield settings, replicas
    finally:
        replicas.stop_all()
        drop_queues(test_cluster, queues)
