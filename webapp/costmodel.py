"""The GPU-time cost model: latent tokens x denoising passes, its unit calibrated from finished runs.

`estimated_gpu_seconds` on every video object and the short/long routing both use it. Until a
model has finished runs, the unit is the H100 figure measured for Mochi; then it is the median of
the model's recent runs (text encoding + denoising + VAE decode, as the job reports them), so a
slower GPU, another model or the CPU `tiny` model get their own numbers without a setting.
"""

from __future__ import annotations

import statistics
import threading
import time

from sqlmodel import Session, select

from webapp.models import Video
from webapp.status import VideoStatus

# ~304 s for 163 frames, 848x480, 64 steps with guidance on one H100 (docs/performance.md).
DEFAULT_SECONDS_PER_UNIT = 304.0 / (28 * 30 * 53 * 64 * 2)
SAMPLE = 20  # recent completed runs per model that set its unit
SCAN = 500  # completed rows looked at to find them
CACHE_SECONDS = 60.0  # an estimate: one query a minute per process is enough
GPU_STAGES = ("text_encode", "denoise", "decode")

_cache: dict[str, tuple[float, dict[str, float]]] = {}
_lock = threading.Lock()


def work_units(*, num_frames: int, width: int, height: int, steps: int, guidance: float) -> int:
    """Latent tokens x steps, x2 with classifier-free guidance (two transformer passes per step)."""
    tokens = ((num_frames - 1) // 6 + 1) * (height // 16) * (width // 16)
    return tokens * steps * (2 if guidance > 1.0 else 1)


def gpu_seconds(timings: dict | None) -> float | None:
    """The GPU part of one finished run, from the job's timings; None if it did not report them
    or resumed from a checkpoint (its denoise time is then for part of the steps)."""
    if not timings or "denoise" not in timings or timings.get("resumed_at_step"):
        return None
    return sum(float(timings.get(k) or 0.0) for k in GPU_STAGES)


def calibrate(session: Session) -> dict[str, float]:
    """Seconds per work unit by model: the median of its last SAMPLE completed runs."""
    rows = session.exec(
        select(Video.model, Video.num_frames, Video.width, Video.height, Video.num_inference_steps,
               Video.guidance_scale, Video.timings)
        .where(Video.status == VideoStatus.completed.value)
        .order_by(Video.seq.desc())
        .limit(SCAN)
    ).all()
    samples: dict[str, list[float]] = {}
    for model, frames, width, height, steps, guidance, timings in rows:
        spent = gpu_seconds(timings)
        units = work_units(num_frames=frames, width=width, height=height, steps=steps, guidance=guidance)
        got = samples.setdefault(model, [])
        if spent and units and len(got) < SAMPLE:
            got.append(spent / units)
    return {model: statistics.median(v) for model, v in samples.items() if v}


def units_by_model(session: Session, *, now: float | None = None) -> dict[str, float]:
    """`calibrate`, cached per database for CACHE_SECONDS."""
    now = time.monotonic() if now is None else now
    key = str(session.get_bind().url)
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    units = calibrate(session)
    with _lock:
        _cache[key] = (now, units)
    return units


def estimate(units: dict[str, float], *, model: str, num_frames: int, width: int, height: int, steps: int,
             guidance: float) -> float:
    """Estimated GPU-seconds of one video with the calibrated units."""
    per_unit = units.get(model, DEFAULT_SECONDS_PER_UNIT)
    work = work_units(num_frames=num_frames, width=width, height=height, steps=steps, guidance=guidance)
    return round(work * per_unit, 3)
