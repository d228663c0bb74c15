"""The GPU-time cost model: a video's transformer FLOPs, seconds per unit calibrated from finished runs.

`estimated_gpu_seconds` on every video object and the short/long routing both use it. Until a
model has finished runs, the unit is the figure measured for Mochi on an H200; then it is the median of
the model's recent runs (text encoding + denoising + VAE decode, as the job reports them), so a
slower GPU, another model or the CPU `tiny` model get their own numbers without a setting.
"""

from __future__ import annotations

import statistics
import threading
import time

from sqlmodel import Session, select

from jobimage.models import spec_for
from jobimage.models.mochi import MOCHI
from core.models import Video
from core.status import VideoStatus

# A unit is one TFLOP of the model's transformer (its spec, jobimage/models/): attention grows with the square of the
# tokens, so seconds per unit stay flat across clip lengths (seconds per token varied 2.2x between 31
# and 163 frames). Measured on one H200 (same compute as an H100), 2026-12-04, the job pod end to end
# with torch.compile: 0.31 s text encoding + 64 guided steps of 5.93 s + 6.90 s VAE decode = 386.7
# GPU-seconds for 163 frames at 848x480 (docs/performance.md, "Mochi on one GPU").
_MEASURED_TFLOP = MOCHI.work_units(num_frames=163, width=848, height=480, steps=64, guidance=4.5)
H200_SECONDS_PER_UNIT = (0.311 + 64 * 5.930 + 6.901) / _MEASURED_TFLOP
DEFAULT_SECONDS_PER_UNIT = H200_SECONDS_PER_UNIT  # until a model has finished runs of its own
SAMPLE = 20  # recent completed runs per model that set its unit
SCAN = 500  # completed rows looked at to find them
CACHE_SECONDS = 60.0  # an estimate: one query a minute per process is enough
GPU_STAGES = ("text_encode", "denoise", "decode")

_cache: dict[str, tuple[float, dict[str, float]]] = {}
_lock = threading.Lock()


def work_units(*, num_frames: int, width: int, height: int, steps: int, guidance: float, model: str = "") -> float:
    """Transformer TFLOPs of one video (the model's spec): per step one forward, two with guidance."""
    return spec_for(model).work_units(num_frames=num_frames, width=width, height=height, steps=steps, guidance=guidance)


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
        units = work_units(num_frames=frames, width=width, height=height, steps=steps, guidance=guidance, model=model)
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
    work = work_units(num_frames=num_frames, width=width, height=height, steps=steps, guidance=guidance, model=model)
    return round(work * per_unit, 3)
