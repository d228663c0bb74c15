"""Entry for `t2v controller` and `t2v serve --with-controller`: the cluster-mode controller."""

from __future__ import annotations

import os
import socket
import threading
import uuid

from controller.kube.api import KubeJobApi
from controller.kube.leader import KubeLeaseApi, LeaderElector
from controller.kube.reconciler import KubeController
from controller.kube.watch import JobWatch
from controller.settings import ControllerSettings
from jobcontract.storage import open_store
from webapp.settings import Settings


def build_controller(settings: Settings) -> KubeController:
    """Dispatcher + watcher for `settings` (extended with the cluster fields), acting only as leader."""
    cs = settings if isinstance(settings, ControllerSettings) else ControllerSettings(
        **settings.model_dump(exclude_unset=True))
    jobs = KubeJobApi(cs.namespace)  # loads the in-cluster or kubeconfig credentials
    elector = LeaderElector(KubeLeaseApi(cs.namespace, cs.lease_name),
                            identity=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                            lease_seconds=cs.lease_seconds, renew_seconds=cs.renew_seconds)
    watch = JobWatch(jobs.list_version, jobs.watch_jobs, threading.Event(), timeout_seconds=cs.watch_timeout_seconds)
    return KubeController(cs, open_store(cs.objects_url), jobs, is_leader=elector.is_leader, watch=watch,
                          release=elector.release)
