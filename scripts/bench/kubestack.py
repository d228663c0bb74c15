"""Shared parts of the cluster benchmarks: a throw-away control plane and t2v in cluster mode on it.

`control_plane()` brings up scripts/testcluster's loopback Kubernetes + Kueue + kwok in a temp state
folder and tears it down. `T2VStack` runs what production runs, each as its own process where it
matters: PostgreSQL, `t2v serve` (kubernetes backend, API only), the controller
(scripts/bench/controller_proc.py: build_controller + run_forever with counters), and in this
process the kwok pod stand-in (tests/support/kwok_pods.py) plus an `Observer` that watches Jobs,
Workloads and pods and stamps when each change reached it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core import queues  # noqa: E402
from scripts.testcluster_lib import build, cluster  # noqa: E402
from scripts.harness.postgres import PostgresServer  # noqa: E402
from scripts.harness.server import Server, start_server  # noqa: E402
from scripts.harness.standin import PodStandIn  # noqa: E402
from scripts.harness.net import free_port  # noqa: E402
from scripts.harness.procs import stop  # noqa: E402

KUEUE_DIR = REPO / "kueue"
KUEUE_QUEUES = [q.cluster_queue for q in queues.QUEUES]  # kueue/20-clusterqueues.yaml
QUEUEING_STRATEGIES = ["BestEffortFIFO", "StrictFIFO"]  # the choices of the benches' --queueing
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
SELECTOR = "app.kubernetes.io/managed-by=t2v-controller"
ANNOTATION_VIDEOS = "t2v.io/video-ids"  # controller/kube/jobs.py


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))]


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the control plane ----------------------------------------------------------------------------


@dataclass
class Plane:
    """A running loopback control plane."""

    c: cluster.Cluster

    @property
    def kubeconfig(self) -> str:
        return self.c.kubeconfig

    @property
    def pki(self) -> Path:
        return Path(self.c.state_dir) / "pki"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(build.binary("kubectl")), "--kubeconfig", self.kubeconfig, *args],
                           capture_output=True, text=True, input=input, timeout=300)
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
        return p

    def cpu_seconds(self, component: str) -> float:
        """User + system CPU time so far of one of the plane's processes ("kueue", "kube-apiserver"...)."""
        return proc_cpu_seconds(cluster._pids(Path(self.c.state_dir))[component])

    def apply_kueue(self, queueing: str | None = None) -> None:
        """kueue/ as shipped; `queueing` (one of QUEUEING_STRATEGIES) overrides its two ClusterQueues'
        queueingStrategy, for an A/B of that setting."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KUEUE_DIR))
        for cq in KUEUE_QUEUES if queueing else ():
            self.kubectl("patch", "clusterqueue", cq, "--type", "merge",
                         "-p", json.dumps({"spec": {"queueingStrategy": queueing}}))

    def apply(self, docs: list[dict]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": docs}))

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def apiserver_requests(self) -> Counter[str]:
        """apiserver_request_total from the API server's /metrics, summed by 'VERB resource[/sub]'."""
        ctx = cluster._ssl_ctx(self.pki)
        with urllib.request.urlopen(f"{self.c.server}/metrics", context=ctx, timeout=30) as r:  # noqa: S310
            text = r.read().decode()
        out: Counter[str] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_s, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
            labels = dict(kv.split("=", 1) for kv in labels_s.split('",') if "=" in kv)
            labels = {k: v.strip('"') for k, v in labels.items()}
            res = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            out[f"{labels.get('verb', '?')} {res}"] += int(float(value))
        return out

    def wait_cluster_queues(self, names: list[str], timeout: float = 120) -> None:
        from kubernetes import client

        with self.api_client() as api:
            custom = client.CustomObjectsApi(api)
            deadline = time.monotonic() + timeout
            for name in names:
                while True:
                    cq = custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", name)
                    conds = (cq.get("status") or {}).get("conditions") or []
                    if any(c["type"] == "Active" and c["status"] == "True" for c in conds):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"ClusterQueue {name} not active: {conds}")
                    time.sleep(0.5)

    def delete_namespace_jobs(self, namespace: str, *, wait: bool = False) -> None:
        """Delete every Job in `namespace`; `wait`: until they are gone (the namespace is used again)."""
        self.kubectl("delete", "jobs", "--all", "-n", namespace, f"--wait={str(wait).lower()}", "--timeout=300s",
                     check=False)


@contextmanager
def control_plane(*, nodes: int = 1, gpus_per_node: int = 8, keep: bool = False) -> Iterator[Plane]:
    """A fresh loopback control plane in a temp state folder, torn down at the end."""
    if build.missing():
        build.build()
    runs = build.cache_root() / "bench-state"
    runs.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="cluster-", dir=runs)) / "state"
    t0 = time.monotonic()
    try:
        c = cluster.up(state, nodes=nodes, gpus_per_node=gpus_per_node)
    except BaseException:
        cluster.down(state)
        raise
    log(f"control plane up in {time.monotonic() - t0:.0f} s ({state})")
    try:
        yield Plane(c)
    finally:
        if keep:
            log(f"keeping the control plane: export KUBECONFIG={c.kubeconfig}")
        else:
            cluster.down(state)
            shutil.rmtree(state.parent, ignore_errors=True)


# ---- what the cluster did, as it reached us -------------------------------------------------------


@dataclass
class JobSeen:
    """First time this process saw each change of one Job (time.time())."""

    videos: list[str]
    created: float
    queue: str = ""
    unsuspended: float | None = None
    active: float | None = None
    finished: float | None = None
    quota_reserved: float | None = None
    admitted: float | None = None
    admitted_server: str | None = None  # the Admitted condition's lastTransitionTime (1 s resolution)
    evictions: int = 0
    suspends: list = field(default_factory=list)  # (time, spec.suspend) each time it changed


@dataclass
class PodSeen:
    job: str
    index: int
    created: float
    bound: float | None = None
    running: float | None = None
    ended: float | None = None
    phase: str = ""
    gpus: int = 0


class Observer:
    """Watches the controller's Jobs, their Workloads and pods in one namespace; stamps first sightings.

    Raw watch streams (no model deserialization) keep its own CPU small. Times are when the event
    reached this process: a few milliseconds after the API server wrote the change on an idle machine.
    """

    def __init__(self, api_client, namespace: str) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.jobs: dict[str, JobSeen] = {}
        self.pods: dict[str, PodSeen] = {}  # by uid
        self._wl_pending: dict[str, dict] = {}  # workloads seen before their Job
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True, name=f"observe-{kind}")
                         for kind in ("jobs", "workloads", "pods")]

    def start(self) -> Observer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list_watch(self, kind: str, **kw):
        if kind == "jobs":
            return self.batch.list_namespaced_job(self.namespace, label_selector=SELECTOR, **kw)
        if kind == "pods":
            return self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR, **kw)
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "workloads", **kw)

    def _loop(self, kind: str) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        while not self._stop.is_set():
            try:
                resp = self._list_watch(kind, _preload_content=False)
                listed = json.loads(resp.data)
                now = time.time()
                for obj in listed["items"]:
                    self._see(kind, obj, now)
                rv = listed["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    resp = self._list_watch(kind, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                            timeout_seconds=30, _preload_content=False)
                    gone = False
                    for line in iter_resp_lines(resp):
                        now = time.time()
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            gone = True
                            break
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if ev.get("type") in ("ADDED", "MODIFIED"):
                            self._see(kind, obj, now)
                    resp.release_conn()
                    if gone:
                        break
            except Exception as e:  # noqa: BLE001 - API server busy: re-list
                if not self._stop.is_set():
                    log(f"observer {kind}: {type(e).__name__}: {e}; re-listing")
                    time.sleep(0.5)

    def _see(self, kind: str, obj: dict, now: float) -> None:
        with self.lock:
            getattr(self, f"_see_{kind}")(obj, now)

    def _see_jobs(self, job: dict, now: float) -> None:
        meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
        name = meta["name"]
        seen = self.jobs.get(name)
        if seen is None:
            videos = ((meta.get("annotations") or {}).get(ANNOTATION_VIDEOS) or "").split(",")
            seen = self.jobs[name] = JobSeen(videos=[v for v in videos if v], created=now,
                                             queue=(meta.get("labels") or {}).get("t2v.io/queue", ""))
            if name in self._wl_pending:
                self._see_workloads(self._wl_pending.pop(name), now)
        suspended = bool(spec.get("suspend"))
        if not seen.suspends or seen.suspends[-1][1] != suspended:
            seen.suspends.append((now, suspended))
        if not suspended:
            seen.unsuspended = seen.unsuspended or now
        if (status.get("active") or 0) > 0 and seen.active is None:
            seen.active = now
        conds = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
        if conds & {"Complete", "Failed", "SuccessCriteriaMet"} and seen.finished is None:
            seen.finished = now

    def _see_workloads(self, wl: dict, now: float) -> None:
        job = next((r["name"] for r in wl["metadata"].get("ownerReferences") or [] if r.get("kind") == "Job"), None)
        if job is None:
            return
        seen = self.jobs.get(job)
        if seen is None:
            self._wl_pending[job] = wl
            return
        conds = {c["type"]: c for c in (wl.get("status") or {}).get("conditions") or []}
        qr, adm, ev = conds.get("QuotaReserved"), conds.get("Admitted"), conds.get("Evicted")
        if qr and qr["status"] == "True" and seen.quota_reserved is None:
            seen.quota_reserved = now
        if adm and adm["status"] == "True" and seen.admitted is None:
            seen.admitted, seen.admitted_server = now, adm.get("lastTransitionTime")
        count = sum(int(s.get("count", 0)) for s in (wl.get("status") or {}).get("schedulingStats", {}).get(
            "evictions") or [])
        if ev and ev["status"] == "True":
            count = max(count, 1)
        seen.evictions = max(seen.evictions, count)

    def _see_pods(self, pod: dict, now: float) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid = meta["uid"]
        seen = self.pods.get(uid)
        if seen is None:
            labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
            gpus = sum(int((c.get("resources") or {}).get("requests", {}).get("nvidia.com/gpu", 0))
                       for c in spec.get("containers") or [])
            seen = self.pods[uid] = PodSeen(job=labels.get("batch.kubernetes.io/job-name", ""),
                                            index=int(ann.get("batch.kubernetes.io/job-completion-index", 0)),
                                            created=now, gpus=gpus)
        if spec.get("nodeName") and seen.bound is None:
            seen.bound = now
        phase = status.get("phase", "")
        if phase == "Running" and seen.running is None:
            seen.running = now
        if phase in ("Succeeded", "Failed") and seen.ended is None:
            seen.ended, seen.phase = now, phase
        if meta.get("deletionTimestamp") and seen.ended is None and not spec.get("nodeName"):
            seen.ended, seen.phase = now, "Deleted"


# ---- t2v in cluster mode --------------------------------------------------------------------------


@dataclass
class T2VStack:
    """PostgreSQL + `t2v serve` + controller process + pod stand-in + observer for one namespace."""

    plane: Plane
    namespace: str
    root: Path
    controller_env: dict[str, str] = field(default_factory=dict)
    run_seconds: object = 0.5
    stand_in: dict = field(default_factory=dict)  # more PodStandIn options (hold=...)
    db: str = "postgres"
    keep_files: bool = False  # leave `root` (database, objects, logs) for a look afterwards
    server: Server | None = None
    controller: subprocess.Popen | None = None
    pods: PodStandIn | None = None
    observer: Observer | None = None
    db_url: str = ""
    _pg: PostgresServer | None = None
    _k8s: object = None

    def start(self) -> T2VStack:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.db == "postgres":
            self._pg = PostgresServer(Path(tempfile.mkdtemp(prefix="t2v-pg-")), free_port())
            self._pg.start()
            self.db_url = self._pg.create_db("t2v_bench")
        else:
            self.db_url = f"sqlite:///{self.root / 't2v.db'}"
        storage = f"file://{self.root / 'objects'}"
        common = {"T2V_DATABASE_URL": self.db_url, "T2V_STORAGE_URL": storage, "T2V_BACKEND": "kubernetes",
                  "T2V_AUTH_REQUIRED": "false", "T2V_LOG_LEVEL": "WARNING", "T2V_NAMESPACE": self.namespace}
        self.server = start_server(self.root / "api", env={**common, **self.controller_env})
        self._k8s = self.plane.api_client()
        self.observer = Observer(self._k8s, self.namespace).start()
        self.pods = PodStandIn(self._k8s, self.namespace, run_seconds=self.run_seconds, **self.stand_in).start()
        env = {**os.environ, **common, "KUBECONFIG": self.plane.kubeconfig,
               "T2V_BENCH_STATS": str(self.root / "controller-stats.json"), **self.controller_env}
        self._ctl_log = open(self.root / "controller.log", "ab")  # noqa: SIM115 - the child's output
        self.controller = subprocess.Popen([sys.executable, str(REPO / "scripts" / "bench" / "controller_proc.py")],
                                           cwd=REPO, env=env, stdout=self._ctl_log, stderr=subprocess.STDOUT)
        time.sleep(3)  # imports, Lease, first pass
        if self.controller.poll() is not None:
            raise RuntimeError(f"controller exited: {(self.root / 'controller.log').read_text()[-3000:]}")
        return self

    def controller_cpu(self) -> float:
        return proc_cpu_seconds(self.controller.pid)

    def api_cpu(self) -> float:
        return proc_cpu_seconds(self.server.proc.pid)

    def controller_snapshot(self) -> dict:
        """The controller's counters now (SIGUSR1 to controller_proc.py)."""
        f = self.root / "controller-stats.snapshot.json"
        f.unlink(missing_ok=True)
        self.controller.send_signal(signal.SIGUSR1)
        for _ in range(100):
            if f.is_file():
                try:
                    return json.loads(f.read_text())
                except ValueError:
                    pass  # half written
            time.sleep(0.1)
        raise RuntimeError("controller wrote no snapshot")

    def stop_controller(self) -> dict:
        """SIGTERM the controller; its counters (controller_proc.py)."""
        if self.controller is None:
            return {}
        stop(self.controller, timeout=60)
        self.controller = None
        f = self.root / "controller-stats.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    def stop(self) -> None:
        if self.controller is not None:
            self.stop_controller()
        if self.pods is not None:
            self.pods.stop()
        if self.observer is not None:
            self.observer.stop()
        if self.server is not None:
            self.server.stop()
        if self._k8s is not None:
            self._k8s.close()
        if self._pg is not None:
            self._pg.stop()
            shutil.rmtree(self._pg.root, ignore_errors=True)
        if self.keep_files:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- client side ----

    def submit_many(self, bodies: list[dict], concurrency: int = 32) -> list[str]:
        """POST /v1/videos for each body, `concurrency` at a time; the ids in order."""
        ids: list[str | None] = [None] * len(bodies)

        async def go() -> None:
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=self.server.url, timeout=120) as http:
                async def one(i: int) -> None:
                    async with sem:
                        r = await http.post("/v1/videos", json=bodies[i])
                        if r.status_code != 200:
                            raise RuntimeError(f"submit {i}: {r.status_code} {r.text[:300]}")
                        ids[i] = r.json()["id"]
                await asyncio.gather(*(one(i) for i in range(len(bodies))))

        asyncio.run(go())
        return [i for i in ids if i]

    def submit(self, body: dict) -> str:
        r = httpx.post(f"{self.server.url}/v1/videos", json=body, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"submit: {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    def submit_csv(self, rows: list[dict], name: str) -> str:
        """POST /v1/batches with a CSV of `rows`; the batch id."""
        import csv
        import io

        cols = sorted({k for r in rows for k in r})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        r = httpx.post(f"{self.server.url}/v1/batches", files={"file": (f"{name}.csv", buf.getvalue().encode(),
                                                                        "text/csv")}, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"batch: {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    # ---- the database, read directly ----

    def engine(self):
        import sqlalchemy as sa

        if not hasattr(self, "_engine"):
            self._engine = sa.create_engine(self.db_url, pool_size=2)
        return self._engine

    def counts(self) -> Counter[str]:
        import sqlalchemy as sa

        with self.engine().connect() as c:
            return Counter({s: n for s, n in c.execute(sa.text("SELECT status, count(*) FROM video GROUP BY status"))})

    def wait_terminal(self, total: int, timeout: float, *, every: float = 1.0, report: float = 30.0) -> bool:
        """Until `total` videos are completed/failed/cancelled; False on timeout."""
        deadline, last = time.monotonic() + timeout, 0.0
        while time.monotonic() < deadline:
            n = self.counts()
            done = n["completed"] + n["failed"] + n["cancelled"]
            if done >= total:
                return True
            if time.monotonic() - last > report:
                last = time.monotonic()
                log(f"  {dict(n)}; load {os.getloadavg()[0]:.1f}")
            time.sleep(every)
        return False

    def videos(self) -> dict[str, dict]:
        import sqlalchemy as sa

        with self.engine().connect() as c:
            rows = c.execute(sa.text("SELECT id, status, queue, priority, batch_id, created_at, started_at, "
                                     "completed_at, attempt, num_frames, width, height, num_inference_steps, "
                                     "guidance_scale, model FROM video")).mappings().all()
            out = {r["id"]: dict(r) for r in rows}
            for vid, at, src, dst in c.execute(sa.text(
                    "SELECT video_id, at, from_status, to_status FROM video_event ORDER BY seq")):
                out[vid].setdefault("events", []).append((at, src, dst))
        return out
