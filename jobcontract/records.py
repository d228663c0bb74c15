"""The job contract between dispatchers (local runner, Kubernetes controller) and job pods.

A job pod reads one dispatch manifest from object storage, takes the items whose
`index` equals its `JOB_COMPLETION_INDEX`, and writes per item: the MP4, a
thumbnail, a progress record while it runs and a result record last. The result
record is written only after the video is uploaded, so its presence means the
item is finished; pods skip items whose final result exists. A pod stopped by
SIGTERM (Kueue preemption, a node drain) saves the latents of its denoising step
as a checkpoint and exits 143; the next pod for that item resumes from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from typing import Any

from jobcontract.errors import ManifestError, ObjectNotFound
from jobcontract.storage import ObjectStore
from jobcontract.video import VideoParams

MANIFEST_VERSION = 1


class ExitCode(IntEnum):
    """How a job process ends; `podFailurePolicy` and the local runner act on these."""

    OK = 0  # every item has a final result (some may be failed for bad input)
    RETRYABLE = 75  # EX_TEMPFAIL: an item hit OOM, storage or node trouble; a retry may help
    STOPPED = 143  # 128 + SIGTERM, what a process killed by it reports: stopped, its denoising checkpointed
    BAD_ITEM = 42  # an item is invalid; do not retry this index (its result says why)
    BAD_SETUP = 78  # EX_CONFIG: model folder missing or incomplete, bad manifest; retrying won't help


def video_keys(video_id: str) -> dict[str, str]:
    """Object keys of one video's outputs; the one layout every component uses."""
    base = f"videos/{video_id}"
    return {
        "video": f"{base}/video.mp4",
        "thumbnail": f"{base}/thumbnail.jpg",
        "progress": f"{base}/progress.json",
        "result": f"{base}/result.json",
        "checkpoint": f"{base}/checkpoint.pt",  # a stopped item's latents; gone once the result is written
    }


def manifest_key(job_name: str) -> str:
    """Object key of a job's dispatch manifest."""
    return f"jobs/{job_name}/manifest.json"


def tokenizer_key(model: str) -> str:
    """Object key of a model's tokenizer.json, published by `t2v model publish` for web apps without weights."""
    return f"models/{model}/tokenizer.json"


@dataclass(frozen=True)
class Item:
    """One video to make: what the pod needs, nothing more."""

    video_id: str
    index: int  # the JOB_COMPLETION_INDEX that owns this item
    prompt: str
    negative_prompt: str
    seed: int
    num_frames: int
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    fps: int
    model: str
    crf: int = VideoParams.model_fields["crf"].default  # manifests written before it had one
    attempt: int = 1
    outputs: dict[str, str] = field(default_factory=dict)

    def keys(self) -> dict[str, str]:
        """Output keys, defaulting to the standard layout."""
        return self.outputs or video_keys(self.video_id)


@dataclass(frozen=True)
class Manifest:
    """A dispatch unit: one Job (or one local run) and its items."""

    job_name: str
    items: list[Item]
    version: int = MANIFEST_VERSION

    def items_for(self, index: int) -> list[Item]:
        """The slice of items that completion index `index` owns."""
        return [i for i in self.items if i.index == index]

    @property
    def completions(self) -> int:
        """How many indexes the job needs."""
        return max((i.index for i in self.items), default=-1) + 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("version") != MANIFEST_VERSION:
                raise ManifestError(f"manifest version {raw.get('version')!r} is not {MANIFEST_VERSION}")
            names = {f.name for f in fields(Item)}
            items = [Item(**{k: v for k, v in it.items() if k in names}) for it in raw["items"]]
            return cls(job_name=raw["job_name"], items=items)
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"malformed manifest: {e}") from e


@dataclass
class Progress:
    """Live progress of one item, rewritten while it runs."""

    video_id: str
    phase: str  # loading | encoding_text | denoising | decoding | encoding | uploading
    step: int = 0
    total_steps: int = 0
    attempt: int = 1
    updated_at: float = field(default_factory=time.time)

    @property
    def percent(self) -> int:
        """0-99 while running; 100 is only ever reported by a result."""
        if self.phase in ("loading", "encoding_text"):
            return 1 if self.phase == "encoding_text" else 0
        if self.phase == "denoising" and self.total_steps:
            return min(95, 2 + int(93 * self.step / self.total_steps))
        return {"decoding": 96, "encoding": 97, "uploading": 98}.get(self.phase, 0)


@dataclass
class Result:
    """Final record of one item: written last, after the video is uploaded."""

    video_id: str
    status: str  # succeeded | failed
    attempt: int = 1
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # load, text_encode, denoise, decode, encode, upload
    gpu: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    finished_at: float = field(default_factory=time.time)

    @property
    def is_final(self) -> bool:
        """Success, or a failure a retry would not fix; such items are skipped on re-run."""
        return self.status == "succeeded" or not self.retryable


def _write(store: ObjectStore, key: str, record: Any) -> None:
    store.put_bytes(key, json.dumps(asdict(record), sort_keys=True).encode(), content_type="application/json")


def _read(store: ObjectStore, key: str, cls: type) -> Any:
    try:
        raw = json.loads(store.get_bytes(key))
    except ObjectNotFound:
        return None
    except ValueError as e:
        raise ManifestError(f"record at {key!r} is not JSON: {e}") from e
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


def write_manifest(store: ObjectStore, manifest: Manifest) -> str:
    """Store the manifest and return its key."""
    key = manifest_key(manifest.job_name)
    store.put_bytes(key, manifest.to_json(), content_type="application/json")
    return key


def read_manifest(store: ObjectStore, key: str) -> Manifest:
    """Load a manifest by key."""
    return Manifest.from_json(store.get_bytes(key))


def write_progress(store: ObjectStore, item: Item, progress: Progress) -> None:
    """Publish live progress for an item."""
    _write(store, item.keys()["progress"], progress)


def read_progress(store: ObjectStore, video_id: str) -> Progress | None:
    """Latest progress of a video, or None."""
    return _read(store, video_keys(video_id)["progress"], Progress)


def write_result(store: ObjectStore, item: Item, result: Result) -> None:
    """Publish an item's final record; call only after the outputs are uploaded."""
    _write(store, item.keys()["result"], result)


def read_result(store: ObjectStore, video_id: str) -> Result | None:
    """The result record of a video, or None if it has none yet."""
    return _read(store, video_keys(video_id)["result"], Result)
