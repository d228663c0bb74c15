"""Entry for `t2v controller` and `t2v serve --with-controller`: the cluster-mode controller."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid

from prometheus_client import CollectorRegistry, start_http_server

from controller.housekeeping import Housekeeper
from controller.kube.api import KubeJobApi
from controller.kube.leader import KubeLeaseApi, LeaderElector
from controller.kube.controller import KubeController
from controller.kube.watch import JobWatch
from controller.settings import ControllerSettings
from controller.threads import start_thread
from jobcontract.storage import open_store
from core.settings import Settings

log = logging.getLogger("t2v.controller")


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


def serve_metrics(address: str, registry: CollectorRegistry):
    """Serve `registry` at http://`address`/metrics (`host:port`; port 0: any free one) on a daemon
    thread; returns the server (`server_port`, `shutdown()`), or None for an empty address."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    server, _ = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    log.info("metrics endpoint listening", extra={"address": f"{host}:{server.server_port}"})
    return server


def run_controller(settings: Settings) -> None:
    """`t2v controller`: the reconcile loop, housekeeping (webhooks, retention) and the metrics endpoint,
    until the process ends. Housekeeping runs in every replica, leader or not: its units of work are
    claimed with leases (controller/housekeeping.py), and webhooks must not wait for a failover."""
    controller = build_controller(settings)
    keeper = Housekeeper(controller.settings, controller.store)
    # As a container's PID 1 the process has no default SIGTERM action: without this handler a deleted
    # controller pod went on acting as leader for its whole grace period (30 s), with its old settings.
    signal.signal(signal.SIGTERM, lambda *_: (keeper.stop(), controller.stop()))
    server = serve_metrics(controller.settings.metrics_address, controller.metrics.registry)
    start_thread(keeper.run_forever, "t2v-housekeeping")
    try:
        controller.run_forever()  # returns after the pass in flight, having released the Lease
    finally:
        keeper.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
