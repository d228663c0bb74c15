"""The job pod's main: manifest in, one MP4 + thumbnail + result per item out, an exit code.

Order of work, like a pipeline `__call__`: 1. read settings and the manifest; 2. skip
finished items; 3. check every item (numbers, then T5 token counts with the model's
tokenizer) before any weight is loaded; 4. load one pipeline per device; 5. generate:
one item per device when there are several, split guidance over two devices when
there is one; 6. encode, upload the MP4 and thumbnail, write the result last.

SIGTERM (Kueue preempting the pod, a node drain) before generation starts ends the
process at once, as the default handler would; during generation each device finishes
its denoising step, saves the item's checkpoint (jobimage/checkpoint.py) and takes no
new item, videos already generated are published, and the exit code is 143.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from jobcontract.errors import ContractError, ManifestError, ObjectNotFound, StorageError, StorageUnavailable
from jobcontract.records import ExitCode, Item, Progress, Result, read_manifest, write_progress, write_result
from jobcontract.storage import ObjectStore, open_store
from jobimage import checkpoint, log
from jobimage.errors import JobImageError, SetupError, ValidationError
from jobimage.model_folder import check_model_folder, model_path
from jobimage.validate import check_item

logger = log.get_logger("jobimage.entrypoint")

PROGRESS_INTERVAL_S = 1.0  # at most one progress write per second per item (plus first and last step)
PROGRESS_MUTE_S = 30.0  # after a failed progress write, skip progress for this long: never stall the GPUs on storage

T = TypeVar("T")


@dataclass(frozen=True)
class UploadRetry:
    """How long a generated item waits for unreachable storage before its attempt fails.

    The video took minutes of GPU time; waiting about a minute for storage to come back
    (MinIO restarting, a network blip) is much cheaper than making it again. Waits double
    from `backoff_s` up to `max_backoff_s`, with jitter so many pods do not retry in step.
    """

    attempts: int = 6  # tries per upload; with the defaults the waits are about 2+4+8+16+30 s
    backoff_s: float = 2.0
    max_backoff_s: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed try: half to all of the doubled backoff."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)

    def call(self, what: str, fn: Callable[[], T], *, video_id: str) -> T:
        """Run `fn`, retrying while storage is unreachable; other storage errors are not retried."""
        t0, tries = time.monotonic(), 0
        while True:
            tries += 1
            try:
                return fn()
            except StorageUnavailable as e:
                if tries >= self.attempts:
                    raise StorageUnavailable(f"could not {what} after {tries} tries over "
                                             f"{time.monotonic() - t0:.1f} s: {e}") from e
                wait = self.delay(tries)
                logger.warning("storage unavailable, retrying", extra=log.kv(
                    video_id=video_id, what=what, tries=tries, of=self.attempts, delay_s=round(wait, 3),
                    error=str(e)))
                time.sleep(wait)


COMPILE_MODES = ("auto", "on", "off")


class Generator(Protocol):
    """The model-specific part of a pod: everything else (manifest, checks, checkpoints, publishing, exit
    codes) is the same for every model, and for the kwok stand-in, which plugs in a fake one."""

    def prepare(self, model_dir: Path, name: str) -> Any:
        """Check the model's folder (SetupError if unusable); return its tokenizer for `check_item`."""

    def load(self, model_dir: Path, name: str, devices: str | None, compile_mode: str) -> list:
        """One worker per device: each has `device`, `gpu`, an `executor` and `close()`."""

    def generate(self, item: Item, workers: list, on_progress: Callable[..., None], *, resume: Any,
                 stop: threading.Event | None, on_denoised: Callable[..., Any] | None) -> Any:
        """An item's frames (`frames`, `seed`, `timings`); raises `checkpoint.Stopped` when `stop` is set."""

    def free_memory(self, device: Any = None) -> None:
        """Give back what a failed or finished item held."""


class DiffusersGenerator:
    """The real one: the diffusers Mochi pipeline (jobimage/models/pipeline.py), which tiny shares."""

    def prepare(self, model_dir: Path, name: str) -> Any:
        from transformers import AutoTokenizer

        folder = check_model_folder(model_path(model_dir, name))
        return AutoTokenizer.from_pretrained(folder / "tokenizer")

    def load(self, model_dir: Path, name: str, devices: str | None, compile_mode: str) -> list:
        from jobimage.models.pipeline import load_workers, parse_devices

        return load_workers(model_path(model_dir, name), parse_devices(devices), compile_mode=compile_mode)

    def generate(self, item: Item, workers: list, on_progress: Callable[..., None], **kw: Any) -> Any:
        from jobimage.models.pipeline import generate

        return generate(item, workers, on_progress, **kw)

    def free_memory(self, device: Any = None) -> None:
        from jobimage.models.pipeline import free_memory

        free_memory(device)


@dataclass(frozen=True)
class Settings:
    """The pod's environment, checked at start-up."""

    manifest_key: str
    index: int
    storage_url: str
    model_dir: Path
    devices: str | None
    upload_retry: UploadRetry = field(default_factory=UploadRetry)
    compile_mode: str = "auto"  # T2V_COMPILE: auto (GPUs only), on, off

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [k for k in ("T2V_MANIFEST", "T2V_STORAGE_URL", "T2V_MODEL_DIR") if not env.get(k)]
        if missing:
            raise SetupError(f"environment variables not set: {', '.join(missing)}")
        raw_index = env.get("JOB_COMPLETION_INDEX", "0") or "0"
        try:
            index = int(raw_index)
        except ValueError as e:
            raise SetupError(f"JOB_COMPLETION_INDEX={raw_index!r} is not an integer") from e
        if index < 0:
            raise SetupError(f"JOB_COMPLETION_INDEX={index} is negative")
        default = UploadRetry()
        retry = UploadRetry(attempts=int(_number(env, "T2V_UPLOAD_ATTEMPTS", default.attempts, int, 1, 100)),
                            backoff_s=_number(env, "T2V_UPLOAD_BACKOFF_SECONDS", default.backoff_s, float, 0, 600),
                            max_backoff_s=_number(env, "T2V_UPLOAD_MAX_BACKOFF_SECONDS", default.max_backoff_s,
                                                  float, 0, 3600))
        compile_mode = (env.get("T2V_COMPILE") or "auto").strip().lower()
        if compile_mode not in COMPILE_MODES:
            raise SetupError(f"T2V_COMPILE={env.get('T2V_COMPILE')!r} is not one of {', '.join(COMPILE_MODES)}")
        return cls(manifest_key=env["T2V_MANIFEST"], index=index, storage_url=env["T2V_STORAGE_URL"],
                   model_dir=Path(env["T2V_MODEL_DIR"]), devices=env.get("T2V_DEVICES") or None,
                   upload_retry=retry, compile_mode=compile_mode)


def _number(env: Mapping[str, str], name: str, default: float, kind: type, low: float, high: float) -> float:
    """An optional numeric variable in [low, high]; a bad value is a setup error that names it."""
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as e:
        raise SetupError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from e
    if not low <= value <= high:
        raise SetupError(f"{name}={raw!r} is out of range: use {low} to {high}")
    return value


@dataclass
class Outcome:
    """What happened to the items of this run; decides the exit code."""

    results: dict[str, Result] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)  # items left unfinished because the pod was told to stop
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, result: Result) -> None:
        with self.lock:
            self.results[result.video_id] = result

    def add_stopped(self, item: Item) -> None:
        with self.lock:
            self.stopped.append(item.video_id)

    def exit_code(self) -> ExitCode:
        if self.stopped:
            return ExitCode.STOPPED
        results = list(self.results.values())
        if any(r.status != "succeeded" and r.retryable for r in results):
            return ExitCode.RETRYABLE
        if any(r.status != "succeeded" for r in results):
            return ExitCode.BAD_ITEM
        return ExitCode.OK


class ItemRun:
    """Progress publishing and the final upload for one item."""

    def __init__(self, store: ObjectStore, item: Item, retry: UploadRetry | None = None) -> None:
        self.store, self.item = store, item
        self.retry = retry or UploadRetry()
        self._last_write = 0.0
        self._muted_until = 0.0

    def progress(self, phase: str, step: int = 0, total: int = 0) -> None:
        now = time.monotonic()
        if now < self._muted_until:
            return
        if phase == "denoising" and 0 < step < total and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        try:
            write_progress(self.store, self.item, Progress(video_id=self.item.video_id, phase=phase, step=step,
                                                           total_steps=total, attempt=self.item.attempt))
        except StorageError as e:  # progress is best effort; the result write decides
            self._muted_until = time.monotonic() + PROGRESS_MUTE_S
            logger.warning("progress write failed", extra=log.kv(video_id=self.item.video_id, error=str(e)))

    def fail(self, code: str, message: str, *, retryable: bool, **extra: object) -> Result:
        result = Result(video_id=self.item.video_id, status="failed", attempt=self.item.attempt,
                        error_code=code, error_message=message[:4000], retryable=retryable, seed=self.item.seed,
                        **extra)  # type: ignore[arg-type]
        try:
            write_result(self.store, self.item, result)
        except StorageError as e:
            logger.error("result write failed", extra=log.kv(video_id=self.item.video_id, error=str(e)))
            result.retryable = True
        level = logger.warning if retryable else logger.error
        level("item failed", extra=log.kv(video_id=self.item.video_id, error_code=code, retryable=retryable,
                                          error=message))
        return result


def _already_final(store: ObjectStore, item: Item) -> bool:
    from jobcontract.records import _read  # the reader that honours custom output keys

    result = _read(store, item.keys()["result"], Result)
    return result is not None and result.is_final


def generate_item(store: ObjectStore, item: Item, workers: list, load_seconds: float,
                  retry: UploadRetry | None = None, stop: threading.Event | None = None,
                  generator: Generator | None = None) -> Result | Published | None:
    """The GPU part of an item (text encode, denoise, decode); a failed Result if it fails, None if
    `stop` was set while it denoised (its checkpoint is then saved)."""
    import torch

    generator = generator or DiffusersGenerator()
    run = ItemRun(store, item, retry)
    devices = [str(w.device) for w in workers]
    resume = checkpoint.load(store, item)
    logger.info("item started", extra=log.kv(video_id=item.video_id, devices=devices, frames=item.num_frames,
                                             size=f"{item.width}x{item.height}", steps=item.num_inference_steps,
                                             from_step=resume.step if resume else 0))
    gpu = workers[0].gpu if len(workers) == 1 else f"{len(workers)} x {workers[0].gpu}"
    timings = {"load": round(load_seconds, 3)}
    try:
        # The finished latents are kept until the result is written: a pod killed while decoding,
        # encoding or uploading (SIGKILL at the end of the grace period, a decode OOM) then costs the
        # next pod the decode, not the whole denoising.
        kept = partial(save_checkpoint, store, item, event="item denoised") if checkpoint.key_of(item) else None
        video = generator.generate(item, workers, run.progress, resume=resume, stop=stop, on_denoised=kept)
        timings.update({k: round(v, 3) for k, v in video.timings.items()})
        return Published(run=run, video=video, timings=timings, gpu=gpu)
    except checkpoint.Stopped as e:
        save_checkpoint(store, item, e.checkpoint)
        return None
    except torch.OutOfMemoryError as e:
        oom = f"out of GPU memory on {devices}: {str(e).splitlines()[0] if str(e) else 'no detail'}"
    except StorageUnavailable as e:
        return run.fail("storage_unavailable", str(e), retryable=True, timings=timings, gpu=gpu)
    except (StorageError, JobImageError) as e:
        return run.fail(getattr(e, "code", "storage_error"), str(e), retryable=True, timings=timings, gpu=gpu)
    except Exception as e:  # an unknown fault; a fresh pod may well succeed, and the retry budget bounds it
        logger.exception("item crashed", extra=log.kv(video_id=item.video_id, devices=devices))
        return run.fail("internal_error", f"{type(e).__name__}: {e}", retryable=True, timings=timings, gpu=gpu)
    # Out of the except block, so the traceback no longer pins the failed step's tensors.
    for w in workers:
        generator.free_memory(w.device)
    return run.fail("cuda_oom", oom, retryable=True, timings=timings, gpu=gpu)


@dataclass
class Published:
    """A generated item waiting for the CPU part: encode, upload, result."""

    run: ItemRun
    video: object  # jobimage.models.pipeline.Video
    timings: dict[str, float]
    gpu: str

    def publish(self) -> Result:
        """Encode the MP4 and thumbnail, upload both, then write the result (last)."""
        from jobimage.encode import encode_mp4, write_thumbnail

        run, item, video, timings, gpu = self.run, self.run.item, self.video, self.timings, self.gpu
        try:
            run.progress("encoding")
            with tempfile.TemporaryDirectory(prefix="t2v-item-") as tmp:
                t0 = time.perf_counter()
                mp4 = encode_mp4(video.frames, item.fps, Path(tmp) / "video.mp4", crf=item.crf)
                thumb = write_thumbnail(video.frames, Path(tmp) / "thumbnail.jpg")
                timings["encode"] = round(time.perf_counter() - t0, 3)
                data = mp4.read_bytes()
                run.progress("uploading")
                t0 = time.perf_counter()
                keys, retry, vid = item.keys(), run.retry, item.video_id
                retry.call("upload the video", lambda: run.store.put_file(keys["video"], mp4,
                                                                          content_type="video/mp4"), video_id=vid)
                retry.call("upload the thumbnail", lambda: run.store.put_file(keys["thumbnail"], thumb,
                                                                              content_type="image/jpeg"), video_id=vid)
                timings["upload"] = round(time.perf_counter() - t0, 3)
            frames, height, width = video.frames.shape[:3]
            result = Result(video_id=item.video_id, status="succeeded", attempt=item.attempt, seed=video.seed,
                            timings=timings, gpu=gpu, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                            num_frames=frames, width=width, height=height, fps=item.fps)
            # Last: its presence means the outputs are complete.
            retry.call("write the result", lambda: write_result(run.store, item, result), video_id=vid)
            checkpoint.discard(run.store, item)
            logger.info("item done", extra=log.kv(video_id=item.video_id, timings=timings, bytes=len(data)))
            return result
        except StorageUnavailable as e:
            return run.fail("storage_unavailable", str(e), retryable=True, timings=timings, gpu=gpu)
        except (StorageError, JobImageError) as e:
            return run.fail(getattr(e, "code", "storage_error"), str(e), retryable=True, timings=timings, gpu=gpu)
        except Exception as e:  # as above: retryable, bounded by the retry budget
            logger.exception("item publish crashed", extra=log.kv(video_id=item.video_id))
            return run.fail("internal_error", f"{type(e).__name__}: {e}", retryable=True, timings=timings, gpu=gpu)


def save_checkpoint(store: ObjectStore, item: Item, saved: checkpoint.Checkpoint, *,
                    event: str = "item stopped") -> bool:
    """Store an item's checkpoint, once (a stopped pod's grace period leaves no time for retries);
    whether it was stored. `event` says why in the log."""
    t0 = time.perf_counter()
    try:
        stored = checkpoint.save(store, item, saved)
    except StorageError as e:  # the item starts over next time, as it did before checkpoints
        logger.error("checkpoint not saved", extra=log.kv(video_id=item.video_id, step=saved.step, error=str(e)))
        return False
    if stored:
        logger.info(f"{event}, checkpoint saved", extra=log.kv(
            video_id=item.video_id, step=saved.step, of=item.num_inference_steps,
            seconds=round(time.perf_counter() - t0, 3)))
    else:
        logger.warning("item stopped; its output keys leave no place for a checkpoint",
                       extra=log.kv(video_id=item.video_id, step=saved.step))
    return stored


def plan(items: list[Item], workers: list) -> tuple[list[Item], Item | None]:
    """(items for the one-item-per-device queue, the item to split over two devices afterwards).

    One item per device gives throughput; when one item would be left to run alone
    while the other devices idle (1 item, or 3 on 2 devices), it runs last with its
    guidance split over two devices instead, so it takes about half as long.
    """
    if len(workers) >= 2 and len(items) % len(workers) == 1:
        return items[:-1], items[-1]
    return items, None


def join(futures: list[Future], poll_s: float = 0.1) -> None:
    """Wait for `futures` in short slices, then raise the first one's error, if any.

    The kernel may deliver the pod's SIGTERM to any thread, and Python runs the handler
    only when the main thread runs Python code: a main thread blocked in one long wait
    would hear it only after every item had finished.
    """
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=poll_s)
    for f in futures:
        f.result()


def run_items(store: ObjectStore, items: list[Item], workers: list, load_seconds: float, outcome: Outcome,
              retry: UploadRetry | None = None, stop: threading.Event | None = None,
              generator: Generator | None = None) -> None:
    """Queue items over the devices (one each at a time), then the leftover item over two devices.

    Encoding and upload run on a separate thread, so a GPU starts its next item while
    the previous one's MP4 is being written. Once `stop` is set no item starts, items
    denoising save their checkpoints, and what was generated is still published.
    """
    stop = stop or threading.Event()
    queued, split = plan(items, workers)
    todo: queue.Queue[Item] = queue.Queue()
    for item in queued:
        todo.put(item)
    publishing: list[Future[Result]] = []

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish") as publisher:
        def start(item: Item, used: list) -> None:
            if stop.is_set():
                outcome.add_stopped(item)
                return
            done = generate_item(store, item, used, load_seconds, retry, stop, generator)
            if done is None:
                outcome.add_stopped(item)
            elif isinstance(done, Result):
                outcome.add(done)
            else:
                publishing.append(publisher.submit(done.publish))

        def drain(worker) -> None:
            while True:
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                start(item, [worker])

        if queued:
            join([w.executor.submit(drain, w) for w in workers])
        if split is not None:
            start(split, workers[:2])
        for f in publishing:
            outcome.add(f.result())


class Terminated(BaseException):
    """SIGTERM while no item is generating: the process ends now (a BaseException, so no
    `except Exception` on the way turns it into an item failure)."""


class StopSignal:
    """The SIGTERM handler: sets `event`; raises `Terminated` unless items are generating, since
    those stop at their next step boundary and save their checkpoints (the handler runs in the
    main thread, which during generation only waits on the devices' threads)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.generating = False

    def __call__(self, signum: int, frame: object) -> None:
        self.event.set()  # nothing else here: a handler that logs could re-enter a log call it interrupted
        if not self.generating:
            raise Terminated


def run(settings: Settings, stop: StopSignal | None = None, *, generator: Generator | None = None,
        store: ObjectStore | None = None) -> ExitCode:
    """Process this pod's items with `generator` (the diffusers pipeline unless given); return the exit code."""
    stop = stop or StopSignal()
    generator = generator or DiffusersGenerator()
    # 1. Manifest.
    store = store or open_store(settings.storage_url)
    manifest = read_manifest(store, settings.manifest_key)
    mine = manifest.items_for(settings.index)
    logger.info("manifest read", extra=log.kv(job=manifest.job_name, index=settings.index, items=len(mine)))
    outcome = Outcome()

    # 2. Skip what is finished.
    pending = []
    for item in mine:
        if _already_final(store, item):
            logger.info("item already final, skipped", extra=log.kv(video_id=item.video_id))
        else:
            pending.append(item)

    # 3. Validate before any weight: numbers first, then the model folder and T5 token counts.
    by_model: dict[str, list[Item]] = {}
    for item in pending:
        if problems := check_item(item):
            outcome.add(ItemRun(store, item).fail(ValidationError.code, "; ".join(problems), retryable=False))
        else:
            by_model.setdefault(item.model, []).append(item)
    tokenizers = {name: generator.prepare(settings.model_dir, name) for name in by_model}

    for name, items in by_model.items():
        tokenizer = tokenizers[name]
        runnable = []
        for item in items:
            if problems := check_item(item, tokenizer):
                outcome.add(ItemRun(store, item).fail(ValidationError.code, "; ".join(problems), retryable=False))
            else:
                runnable.append(item)
        if not runnable:
            continue
        if stop.event.is_set():  # told to stop while another model's items ran
            for item in runnable:
                outcome.add_stopped(item)
            continue

        # 4. Load once per device, 5-6. generate and publish.
        for item in runnable:
            ItemRun(store, item).progress("loading")
        t0 = time.perf_counter()
        workers = generator.load(settings.model_dir, name, settings.devices, settings.compile_mode)
        load_seconds = time.perf_counter() - t0
        logger.info("model loaded", extra=log.kv(model=name, devices=[str(w.device) for w in workers],
                                                 gpu=workers[0].gpu, seconds=round(load_seconds, 2),
                                                 compile=settings.compile_mode))
        try:
            stop.generating = True
            run_items(store, runnable, workers, load_seconds, outcome, settings.upload_retry, stop.event, generator)
        finally:
            stop.generating = False
            for w in workers:
                w.close()
            del workers
            generator.free_memory()
    code = outcome.exit_code()
    logger.info("job finished", extra=log.kv(exit_code=int(code), items=len(mine), skipped=len(mine) - len(pending),
                                             failed=sum(r.status != "succeeded" for r in outcome.results.values()),
                                             stopped=len(outcome.stopped)))
    return code


def main(env: Mapping[str, str] | None = None) -> int:
    """`python -m jobimage`: run with the process environment and return the exit code."""
    log.setup()
    env = os.environ if env is None else env
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from T2V_MODEL_DIR only, never the network
    # torch.compile's caches: inductor's default folder is named after the user, which a non-root
    # uid without a passwd entry does not have, and Triton's is under a HOME a read-only root
    # filesystem cannot write. T2V_COMPILE_CACHE on a node-local volume keeps them across pods.
    compile_cache = Path(env.get("T2V_COMPILE_CACHE") or Path(tempfile.gettempdir()) / "t2v-compile")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(compile_cache / "triton"))
    stop = StopSignal()
    previous = signal.signal(signal.SIGTERM, stop)
    # Restart system calls the signal interrupts: a SIGTERM that lands in the publishing thread must
    # not fail ffmpeg's or the storage client's write with EINTR (Python's own calls retry anyway).
    signal.siginterrupt(signal.SIGTERM, False)
    try:
        return int(run(Settings.from_env(env), stop))
    except Terminated:
        logger.warning("SIGTERM before any item was generating: stopped")
        return int(ExitCode.STOPPED)
    except Exception as e:
        return int(exit_code_of(e))
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code_of(e: Exception) -> ExitCode:
    """The exit code of a job that `run` left with `e` (logged here); the kwok stand-in uses it too."""
    if isinstance(e, SetupError):
        print(f"t2v job: {e}", file=sys.stderr)
        logger.error("setup error", extra=log.kv(error=str(e)))
        return ExitCode.BAD_SETUP
    if isinstance(e, ObjectNotFound):
        print(f"t2v job: manifest not found: {e}", file=sys.stderr)
        return ExitCode.BAD_SETUP
    if isinstance(e, StorageUnavailable):
        logger.error("storage unavailable", extra=log.kv(error=str(e)))
        return ExitCode.RETRYABLE
    if isinstance(e, ManifestError):
        print(f"t2v job: bad manifest: {e}", file=sys.stderr)
        return ExitCode.BAD_SETUP
    if isinstance(e, (StorageError, ContractError)):
        logger.error("storage error", extra=log.kv(error=str(e)))
        return ExitCode.RETRYABLE
    # An unknown fault, out of memory included: a fresh pod may well succeed.
    logger.error("job crashed", exc_info=e)
    return ExitCode.RETRYABLE
