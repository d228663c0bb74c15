"""A stand-in for the job image on kwok's fake GPU nodes (kwok has no container runtime).

kwok moves pods through their phases but runs nothing, so on the test control plane nobody
would read the dispatch manifest or write a video. `PodStandIn` plays the two missing parts
for the Job pods of one namespace, from the same inputs the real ones get:

- the job image: when a pod is Running it takes the container's env (`T2V_MANIFEST`,
  `T2V_STORAGE_URL`, ...) and the completion index annotation
  `batch.kubernetes.io/job-completion-index` (what Kubernetes turns into
  `JOB_COMPLETION_INDEX`), parses them with `jobimage.entrypoint.Settings` and runs the job
  image's own `jobimage.entrypoint.run` with a `StandInGenerator` plugged into its generator
  seam: the manifest, skipping finished items, the checks, progress, checkpoints, a small real
  H.264 MP4, its thumbnail, the result record and the exit code are the pod's own code. Only the
  GPU step is replaced: the frames are a few small seeded gradients, and prompt length is
  counted in words (a lower bound of T5 tokens), so a prompt of more than 255 words fails as
  an invalid item with exit code 42 exactly as in the real pod.
  A pod deleted while it runs stops its item as a SIGTERM does: the job image saves the step
  reached as its checkpoint (a one-number tensor stands in for the latents) and the next pod
  for the item resumes from that step, as the real pod does.
- the kubelet: it marks the pod Succeeded or Failed by patching the status subresource with
  the container's terminated state and exit code (what `podFailurePolicy` reads), and a pod
  deleted while it runs (suspended by Kueue, preempted) is stopped and reported Failed with
  exit code 143, as SIGTERM ends `python -m jobimage`.

Pacing: kwok's own pod stages (scripts/testcluster_lib/cluster.py) wait 1 s plus up to 5 s of
jitter per step, and its pod-complete stage would mark a Running Job pod Succeeded (exit 0)
after the same 1-6 s on its own. The first time the stand-in sees a pod it annotates it:
`start_delay` for kwok's create/init/ready stages, 24 h for pod-complete, so the stand-in
alone decides how a pod ends. kwok re-reads the annotations on every change of the pod
(a new resourceVersion replaces its pending step); pods that kwok completed anyway are
listed in `foreign`, so a test can assert there were none.

Not pytest-bound: `with PodStandIn(api_client, namespace) as s: ...` works in a script too
(e.g. a benchmark submitting hundreds of videos); `runs` holds one record per pod. Each running
pod gets a thread (pods are bounded by the GPUs Kueue admits); the watch only follows pods that are
not finished yet, so a namespace full of completed pods costs nothing. The store is opened from the
pod's `T2V_STORAGE_URL`; for `s3://` the stand-in's own environment must carry the credentials
(`T2V_S3_ACCESS_KEY`/`T2V_S3_SECRET_KEY`) that a real pod gets from the `t2v-storage` Secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from jobcontract.records import ExitCode, Item, read_manifest
from jobcontract.storage import ObjectStore, open_store
from jobimage import checkpoint, entrypoint
from jobimage.entrypoint import Settings, StopSignal
from jobimage.errors import SetupError

log = logging.getLogger("t2v.tests.kwok_pods")

SELECTOR = "app.kubernetes.io/managed-by=t2v-controller"  # the controller's Job pods (controller/kube/api.py)
NOT_FINISHED = "status.phase!=Succeeded,status.phase!=Failed"  # a pod that ends leaves the watch (DELETED)
CONTAINER = "t2v"  # controller/kube/jobs.py CONTAINER; podFailurePolicy matches its exit code
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_LABEL = "batch.kubernetes.io/job-name"
PACED = "t2v.io/kwok-stand-in"  # our mark that the pacing annotations are set
KWOK_STEPS = ("pod-create", "pod-init-container-running", "pod-init-container-completed", "pod-ready")
SIGTERM_EXIT = 143


class WordTokenizer:
    """Counts words plus the closing `</s>`: T5 makes at least one token of every word, so a prompt
    this counts as over 256 is over for the real tokenizer too (the real pod loads T5's)."""

    def __call__(self, text: str, **_: object) -> dict[str, list[int]]:
        return {"input_ids": [0] * (len(text.split()) + 1)}


@dataclass(frozen=True)
class StandInVideo:
    """What `Published.publish` needs from a generated clip: frames and the seed."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    seed: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class PodRun:
    """One pod the stand-in ran: which Job index, which items, how it ended."""

    pod: str
    job: str
    index: int
    node: str
    started: float
    items: list[str] = field(default_factory=list)
    exit_code: int | None = None  # None while running
    ended: float | None = None
    killed: bool = False  # deleted while running (Kueue suspended or preempted it)
    try_no: int = 1  # 1 for the first pod of this Job index, 2 for its first retry, ...
    resumed: dict[str, int] = field(default_factory=dict)  # video id -> the checkpoint step it went on from
    saved: dict[str, int] = field(default_factory=dict)  # video id -> the step checkpointed when stopped
    lost_seconds: float = 0.0  # time spent on denoising that a stop threw away (not checkpointed)


def frames_for(item: Item, *, size: int = 64, max_frames: int = 7) -> np.ndarray:
    """A few frames of a moving gradient, seeded by the item: small, real, different per video."""
    n = max(1, min(item.num_frames, max_frames))
    rng = np.random.default_rng(item.seed % 2**32)
    base = rng.integers(0, 256, size=3)
    ramp = np.linspace(0, 255, size, dtype=np.float64)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for f in range(n):
        for c in range(3):
            out[f, :, :, c] = ((ramp[None, :] + ramp[:, None] * (c + 1) / 3 + base[c] + 16 * f) % 256).astype(np.uint8)
    return out


@dataclass
class StandInWorker:
    """A "device" of the stand-in: what `entrypoint.run_items` needs of a worker."""

    device: str = "cuda:0"
    gpu: str = "kwok stand-in (no GPU)"
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class StandInGenerator:
    """The job image's `Generator` for kwok: paced steps, held or failing items as the test asks,
    seeded gradient frames. Everything around it (checks, checkpoints, publishing, exit codes) is
    the job image's own `entrypoint.run`."""

    def __init__(self, standin: PodStandIn, run: PodRun, cancel: threading.Event) -> None:
        self.standin, self.run, self.cancel = standin, run, cancel

    def prepare(self, model_dir: object, name: str) -> WordTokenizer:
        return WordTokenizer()

    def load(self, model_dir: object, name: str, devices: str | None, compile_mode: str) -> list[StandInWorker]:
        return [StandInWorker()]

    def free_memory(self, device: object = None) -> None:
        pass

    def generate(self, item: Item, workers: list, on_progress: Callable[..., None], *,
                 resume: checkpoint.Checkpoint | None, stop: object, on_denoised: object) -> StandInVideo:
        s, run, cancel = self.standin, self.run, self.cancel
        total = max(1, item.num_inference_steps)
        done = resume.step if resume is not None and s.resume else 0
        if done:
            run.resumed[item.video_id] = done
        t0 = mark = time.monotonic()  # mark: when the last step ended
        if s.hold(item):
            # The first step is taken, then the item waits (progress shows step 1 until release()).
            done = max(done, 1)
            while not (s._released.is_set() or cancel.is_set()):
                on_progress("denoising", done, total)
                cancel.wait(0.2)
        per_step = s.run_seconds(item) / total
        while done < total and not cancel.wait(per_step):
            done, mark = done + 1, time.monotonic()
            on_progress("denoising", done, total)
        if cancel.is_set():
            # SIGTERM mid-item: the steps done are checkpointed (when resuming is on); the time since the
            # last kept step is lost.
            with s._lock:
                run.lost_seconds += time.monotonic() - (mark if s.resume else t0)
            if s.resume and done:
                run.saved[item.video_id] = done
            raise checkpoint.Stopped(checkpoint.Checkpoint(step=done if s.resume else 0, latents=_torch().zeros(1)))
        if s.oom(item, run.try_no):
            raise _torch().OutOfMemoryError("CUDA out of memory (kwok stand-in)")
        timings = {"denoise": round(s.reported_seconds(item, time.monotonic() - t0), 3)}
        if item.video_id in run.resumed:
            timings["resumed_at_step"] = run.resumed[item.video_id]
        return StandInVideo(frames=frames_for(item), seed=item.seed, timings=timings)


def _torch():
    import torch

    return torch


class PodStandIn:
    """Runs the controller's Job pods of `namespace` on kwok: job image and kubelet in one thread pool.

    run_seconds: how long each item "generates" (progress is written meanwhile); a number or a
        function of the item.
    hold: items for which it returns True wait at `denoising` until `release()` (or the pod is deleted).
    oom: oom(item, try_no) True fails the item as the job image does on CUDA out-of-memory (a retryable
        result, exit 75) in the try_no-th pod of its index.
    start_delay: kwok's create/init/ready step delay (Go duration) for the pods; "0s" is as fast as kwok goes.
    reported_seconds: reported_seconds(item, measured) is the `denoise` time the result records (default:
        the measured one); a benchmark that compresses time reports the uncompressed figure, so the cost
        model's calibration from finished runs sees real-scale runs.
    resume: stopped items save a checkpoint and re-runs go on from it (the job image since checkpoints);
        False plays the job image before them, every stop throwing the item's denoising away.
    """

    def __init__(self, api_client, namespace: str, *, run_seconds: float | Callable[[Item], float] = 0.3,
                 hold: Callable[[Item], bool] | None = None, oom: Callable[[Item, int], bool] | None = None,
                 start_delay: str = "0s", watch_seconds: int = 5,
                 reported_seconds: Callable[[Item, float], float] | None = None, resume: bool = True) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.run_seconds = run_seconds if callable(run_seconds) else (lambda item, s=float(run_seconds): s)
        self.hold = hold or (lambda item: False)
        self.oom = oom or (lambda item, try_no: False)
        self.start_delay = start_delay
        self.reported_seconds = reported_seconds or (lambda item, measured: measured)
        self.resume = resume
        self.watch_seconds = watch_seconds
        self.runs: list[PodRun] = []
        self.foreign: list[str] = []  # pods that ended without us (kwok's own pod-complete stage)
        self.errors: list[str] = []  # stand-in faults (not the pods' exit codes)
        self._released = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._paced: set[str] = set()  # pod uids annotated
        self._started: dict[str, PodRun] = {}  # pod uid -> run
        self._cancel: dict[str, threading.Event] = {}  # pod uid -> set when the pod is being deleted
        self._killed: set[str] = set()  # pod uids reported terminated after deletion
        self._workers: list[threading.Thread] = []
        self._stores: dict[str, ObjectStore] = {}
        self._thread = threading.Thread(target=self._watch_loop, name="kwok-pod-watch", daemon=True)
        self._watch = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> PodStandIn:
        """Start following pods (call before anything creates Jobs, so no pod is missed)."""
        self._thread.start()
        return self

    def release(self) -> None:
        """Let every held item (now and later) go on."""
        self._released.set()

    def stop(self) -> None:
        """Stop watching and stop every pod still running (they keep their state in the cluster)."""
        self._stop.set()
        for ev in list(self._cancel.values()):
            ev.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=self.watch_seconds + 5)
        for t in list(self._workers):
            t.join(timeout=30)

    def __enter__(self) -> PodStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def finished(self) -> list[PodRun]:
        """Runs that ended (any exit code), in the order they ended."""
        with self._lock:
            return sorted((r for r in self.runs if r.exit_code is not None), key=lambda r: r.ended or 0)

    def running(self) -> list[PodRun]:
        """Runs in progress now."""
        with self._lock:
            return [r for r in self.runs if r.exit_code is None]

    # ---- watching -------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                # A list first (level-triggered: nothing missed between watches), then a short watch.
                resp = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR,
                                                     field_selector=NOT_FINISHED, _preload_content=False)
                listed = json.loads(resp.data)
                for pod in listed["items"]:
                    self._observe(pod)
                self._watch = w = watch.Watch()
                for ev in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=SELECTOR,
                                   field_selector=NOT_FINISHED, resource_version=listed["metadata"]["resourceVersion"],
                                   timeout_seconds=self.watch_seconds, allow_watch_bookmarks=True):
                    if self._stop.is_set():
                        break
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._observe(ev["raw_object"])
                    elif ev["type"] == "DELETED":
                        self._gone(ev["raw_object"])
                    elif ev["type"] == "ERROR":
                        break  # 410 Gone and the like: re-list
            except Exception as e:  # noqa: BLE001 - API server hiccup: re-list after a pause
                if not self._stop.is_set():
                    log.warning("pod watch failed; re-listing", extra={"error": str(e)})
                    self._stop.wait(0.5)

    def _observe(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid, phase = meta["uid"], status.get("phase")
        if phase in ("Succeeded", "Failed"):
            self._gone(pod)
            return
        if meta.get("deletionTimestamp"):
            self._kill(pod)
            return
        if uid not in self._paced and (meta.get("annotations") or {}).get(PACED) is None:
            self._pace(meta["name"], uid)
        if phase == "Running" and uid not in self._started:
            ann = meta.get("annotations") or {}
            run = PodRun(pod=meta["name"], job=(meta.get("labels") or {}).get(JOB_LABEL, ""),
                         index=int(ann.get(INDEX_ANNOTATION, "0")), node=(pod.get("spec") or {}).get("nodeName", ""),
                         started=time.time())
            cancel = threading.Event()
            worker = threading.Thread(target=self._run_pod, args=(pod, run, cancel), name=f"kwok-pod-{meta['name']}",
                                      daemon=True)
            with self._lock:
                run.try_no = 1 + sum(r.job == run.job and r.index == run.index for r in self.runs)
                self._started[uid] = run
                self._cancel[uid] = cancel
                self.runs.append(run)
                self._workers = [t for t in self._workers if t.is_alive()] + [worker]
            worker.start()

    def _gone(self, pod: dict) -> None:
        """A pod finished or left the API: note pods that ended without the stand-in, stop orphaned work."""
        meta = pod["metadata"]
        uid, phase = meta["uid"], (pod.get("status") or {}).get("phase")
        with self._lock:
            run, cancel = self._started.get(uid), self._cancel.get(uid)
            ours = uid in self._killed or run is not None
            if phase in ("Succeeded", "Failed") and not ours and uid not in self.foreign:
                self.foreign.append(uid)  # kwok completed it (or something else did)
                log.warning("pod ended without the stand-in", extra={"pod": meta["name"], "phase": phase})
        if phase not in ("Succeeded", "Failed") and cancel is not None:
            cancel.set()  # force-deleted while running: nobody to report to, just stop

    def _pace(self, name: str, uid: str) -> None:
        ann = {PACED: "paced"}
        for step in KWOK_STEPS:
            ann[f"{step}.stage.kwok.x-k8s.io/delay"] = self.start_delay
            ann[f"{step}.stage.kwok.x-k8s.io/jitter-delay"] = self.start_delay
        ann["pod-complete.stage.kwok.x-k8s.io/delay"] = "24h"  # never: the stand-in ends the pod
        ann["pod-complete.stage.kwok.x-k8s.io/jitter-delay"] = "24h"
        try:
            self.core.patch_namespaced_pod(name, self.namespace, {"metadata": {"annotations": ann}},
                                           _content_type="application/strategic-merge-patch+json")
            self._paced.add(uid)
        except Exception as e:  # noqa: BLE001 - pod gone meanwhile; a later event retries
            log.info("could not annotate pod", extra={"pod": name, "error": str(e)})

    # ---- the job image ---------------------------------------------------------------------------

    def _run_pod(self, pod: dict, run: PodRun, cancel: threading.Event) -> None:
        try:
            code = self._job_image(pod, run, cancel)
        except Exception as e:  # noqa: BLE001 - a stand-in bug must show, not hang the test
            log.exception("stand-in failed", extra={"pod": run.pod})
            with self._lock:
                self.errors.append(f"{run.pod}: {type(e).__name__}: {e}")
            code = int(ExitCode.RETRYABLE)
        if cancel.is_set():
            self._kill(pod, from_worker=True)
            return
        self._terminate(pod, code, reason="Completed" if code == 0 else "Error")
        with self._lock:
            run.exit_code, run.ended = code, time.time()

    def _job_image(self, pod: dict, run: PodRun, cancel: threading.Event) -> int:
        """`python -m jobimage`'s own `run`, with the stand-in generator instead of Mochi."""
        container = next(c for c in pod["spec"]["containers"] if c["name"] == CONTAINER)
        env = {e["name"]: e.get("value", "") for e in container.get("env") or [] if "value" in e}
        env["JOB_COMPLETION_INDEX"] = str(run.index)
        try:
            settings = Settings.from_env(env)
        except SetupError:
            return int(ExitCode.BAD_SETUP)
        with self._lock:
            store = self._stores.get(settings.storage_url)
            if store is None:
                store = self._stores[settings.storage_url] = open_store(settings.storage_url)
        stop = StopSignal()
        stop.event = cancel  # a deleted pod is a SIGTERM: the item in flight checkpoints, no new one starts
        try:
            run.items.extend(i.video_id for i in read_manifest(store, settings.manifest_key).items_for(run.index))
            return int(entrypoint.run(settings, stop, generator=StandInGenerator(self, run, cancel), store=store))
        except Exception as e:  # noqa: BLE001 - the job image's own mapping of failures to exit codes
            return int(entrypoint.exit_code_of(e))

    # ---- the kubelet ----------------------------------------------------------------------------

    def _kill(self, pod: dict, *, from_worker: bool = False) -> None:
        """A deleted pod: stop its work, then report the container ended by SIGTERM (exit 143)."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            run = self._started.get(uid)
            cancel = self._cancel.get(uid)
            if uid in self._killed:
                return
            if run is not None and run.exit_code is None and not from_worker:
                cancel.set()  # the worker reports when it has stopped
                return
            if run is not None and run.exit_code is not None:
                return  # it ended before the delete; its status is already terminal
            if run is None and not (pod.get("spec") or {}).get("nodeName"):
                return  # never bound: no kubelet would report it (the pod GC controller ends it)
            self._killed.add(uid)
            if run is not None:
                run.exit_code, run.ended, run.killed = SIGTERM_EXIT, time.time(), True
        self._terminate(pod, SIGTERM_EXIT, reason="Error")

    def _terminate(self, pod: dict, code: int, *, reason: str) -> None:
        """Patch the pod status as a kubelet does when its only container exits with `code`."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = pod["metadata"]
        statuses = []
        for c in pod["spec"]["containers"]:
            statuses.append({"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                             "restartCount": 0, "started": False,
                             "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": now,
                                                      "finishedAt": now}}})
        body = {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": t, "status": "False", "reason": "PodCompleted" if code == 0 else "PodFailed",
                            "lastTransitionTime": now} for t in ("Ready", "ContainersReady")],
            "containerStatuses": statuses,
        }}
        try:
            self.core.patch_namespaced_pod_status(meta["name"], self.namespace, body,
                                                  _content_type="application/strategic-merge-patch+json")
        except Exception as e:  # noqa: BLE001 - the pod may be gone already (force-deleted)
            log.info("could not report pod status", extra={"pod": meta["name"], "error": str(e)})


def sha256_of(data: bytes) -> str:
    """Helper for tests comparing downloads with result records."""
    return hashlib.sha256(data).hexdigest()
