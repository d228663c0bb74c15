"""Denoising checkpoints: what a stopped item has done, so the next pod resumes instead of starting over.

Kueue preempts a pod by deleting it: the kubelet sends SIGTERM and, after the grace period
(30 s by default), SIGKILL. One denoising step of a long Mochi item is seconds on an H100, the
whole item minutes; without a checkpoint every preemption throws away the steps in flight on
each of the pod's GPUs. So on SIGTERM each device finishes its current step, the item's latents
after that step (a few MB) go to storage under the video's `checkpoint` key, and the pod exits
143. The next pod for the item runs the text encoder again (a fraction of a second) and the
denoising loop from the saved step: Mochi's flow-matching scheduler is deterministic, so the
video is the one an uninterrupted run makes.

The final latents are saved the same way before the VAE decode starts: a pod killed while it
decodes, encodes or uploads (the grace period over, a decode out of memory) leaves the next pod
only the decode.

A checkpoint names the inputs it was made from (`fingerprint`); one made for other inputs, in
another format, or unreadable is ignored (logged) and the item starts over. The pod deletes it
once the item's result is written; the API and the janitor delete it with the video's files.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import torch

from jobcontract.errors import ObjectNotFound, StorageError
from jobcontract.records import Item
from jobcontract.storage import ObjectStore
from jobcontract.video import LATENT_INPUTS
from jobimage import log

logger = log.get_logger("jobimage.checkpoint")

FORMAT = 1
# What decides the latents of a step: the video's parameters less those that only shape the file
# (`fps`); `attempt` and the output keys do not either.
INPUTS = LATENT_INPUTS


@dataclass(frozen=True)
class Checkpoint:
    """The latents after `step` of the item's denoising steps (on the CPU)."""

    step: int
    latents: torch.Tensor


class Stopped(Exception):
    """Raised out of the denoising loop when the pod is asked to stop; carries what to save."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(f"stopped after denoising step {checkpoint.step}")
        self.checkpoint = checkpoint


def fingerprint(item: Item) -> str:
    """A digest of the inputs that decide the latents."""
    inputs = {name: getattr(item, name) for name in INPUTS}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def key_of(item: Item) -> str | None:
    """Where the item's checkpoint lives; None when its output keys leave no place for one."""
    return item.keys().get("checkpoint")


def save(store: ObjectStore, item: Item, checkpoint: Checkpoint) -> bool:
    """Write the checkpoint (one object, replaced atomically); False when the item has no key for one,
    StorageError if storage refuses it."""
    key = key_of(item)
    if key is None:
        return False
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "fingerprint": fingerprint(item), "step": checkpoint.step,
                "latents": checkpoint.latents.detach().cpu()}, buf)
    store.put_bytes(key, buf.getvalue())
    return True


def load(store: ObjectStore, item: Item) -> Checkpoint | None:
    """The item's checkpoint, or None when there is none it can use (the item then starts over)."""
    key = key_of(item)
    if key is None:
        return None
    try:
        data = store.get_bytes(key)
    except ObjectNotFound:
        return None
    except StorageError as e:  # starting over costs GPU time, never correctness
        logger.warning("checkpoint unreadable, starting over", extra=log.kv(video_id=item.video_id, error=str(e)))
        return None
    try:
        raw = torch.load(io.BytesIO(data), weights_only=True)
        why = _unusable(raw, item)
    except Exception as e:  # noqa: BLE001 - a torn or foreign object is not worth failing the item for
        why = f"not a checkpoint: {type(e).__name__}: {e}"
    if why:
        logger.warning("checkpoint ignored, starting over", extra=log.kv(video_id=item.video_id, reason=why))
        return None
    return Checkpoint(step=raw["step"], latents=raw["latents"])


def _unusable(raw: object, item: Item) -> str | None:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return f"format {raw.get('format') if isinstance(raw, dict) else type(raw).__name__!r} is not {FORMAT}"
    if raw.get("fingerprint") != fingerprint(item):
        return "made for other inputs"
    step = raw.get("step")
    if not isinstance(step, int) or not 0 < step <= item.num_inference_steps:
        return f"step {step!r} is not within 1..{item.num_inference_steps}"
    if not isinstance(raw.get("latents"), torch.Tensor):
        return "no latents"
    return None


def discard(store: ObjectStore, item: Item) -> None:
    """Delete the checkpoint after the result is written; a failure leaves it to the video's deletion."""
    key = key_of(item)
    if key is None:
        return
    try:
        store.delete(key)
    except StorageError as e:
        logger.warning("checkpoint not deleted", extra=log.kv(video_id=item.video_id, error=str(e)))
