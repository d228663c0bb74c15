"""Mochi generation: one pipeline per device, and one item on one or two devices.

The steps follow `MochiPipeline.__call__` (same text encoding, latents, sigma
schedule, fp32 guidance and scheduler step, VAE denormalisation), written out so
classifier-free guidance can run its two branches on two devices at once and so
each denoising step reports progress.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from jobcontract.records import Item
from jobimage.attention import install_attention
from jobimage.checkpoint import Checkpoint, Stopped
from jobimage.errors import SetupError
from jobimage.models.mochi import MOCHI

# diffusers' Mochi RoPE opens an fp32 autocast region; on CPU torch warns on every step.
warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported", category=UserWarning)

ProgressFn = Callable[[str, int, int], None]  # (phase, step, total_steps)


def parse_devices(spec: str | None) -> list[torch.device]:
    """`T2V_DEVICES` ("cpu", "cpu,cpu", "cuda:0,cuda:1"), or every visible GPU, else the CPU."""
    if spec and spec.strip():
        try:
            devices = [torch.device(s.strip()) for s in spec.split(",") if s.strip()]
        except RuntimeError as e:
            raise SetupError(f"T2V_DEVICES={spec!r} is not a device list like 'cuda:0,cuda:1' or 'cpu': {e}") from e
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        for d in devices:
            if d.type == "cuda" and (d.index or 0) >= visible:
                raise SetupError(f"T2V_DEVICES names {d}, but {visible} CUDA device(s) are visible")
            if d.type not in ("cuda", "cpu"):
                raise SetupError(f"T2V_DEVICES names {d}: only cuda and cpu devices are supported")
        return devices
    if torch.cuda.is_available():
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [torch.device("cpu")]


def dtype_for(device: torch.device) -> torch.dtype:
    """bf16 on GPUs (Mochi's released precision); fp32 on CPUs, where bf16 is slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def device_name(device: torch.device) -> str:
    """The GPU model (for results and logs), or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Worker:
    """One full pipeline on one device, with a thread that runs work on it."""

    pipe: object  # MochiPipeline
    device: torch.device
    gpu: str
    load_seconds: float
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _variant(folder: Path, device: torch.device) -> str | None:
    # The hub repo may ship bf16 copies of a component's weights ("*.bf16*.safetensors"):
    # half the bytes to read. Decided per component, since not every component has them.
    if device.type == "cuda" and any(folder.glob("*.bf16*.safetensors")):
        return "bf16"
    return None


def should_compile(mode: str, device: torch.device) -> bool:
    """`T2V_COMPILE`: `auto` compiles on GPUs only (on a CPU inductor's compile outlasts a tiny video)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_transformer(transformer: torch.nn.Module) -> int:
    """Regional torch.compile: each transformer block on its own; returns how many.

    Measured on an H200 (docs/performance.md): eager Mochi spends about a quarter of a step on
    elementwise work (fp32 norms, modulation, RoPE, casts) that inductor fuses, so a guided step
    at 163 frames goes from 7.34 s to 5.84 s. Blocks share one compiled graph per input shape
    (15-25 s the first time in a process, 3-10 s with inductor's cache warm); the attention op's
    fixed shapes mean a new prompt length compiles nothing (jobimage/attention.py).
    """
    blocks = list(getattr(transformer, "transformer_blocks", []))
    for block in blocks:
        block.compile(dynamic=False)
    return len(blocks)


def load_worker(folder: Path, device: torch.device, *, compile_mode: str = "off") -> Worker:
    """Load the whole pipeline onto `device`: no CPU offload, no device_map split."""
    import diffusers
    import transformers
    from diffusers import AutoencoderKLMochi, MochiPipeline, MochiTransformer3DModel
    from transformers import T5EncoderModel

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    dtype = dtype_for(device)
    parts = {}
    for name, cls in (("transformer", MochiTransformer3DModel), ("vae", AutoencoderKLMochi),
                      ("text_encoder", T5EncoderModel)):
        parts[name] = cls.from_pretrained(folder / name, dtype=dtype, variant=_variant(folder / name, device))
    pipe = MochiPipeline.from_pretrained(folder, dtype=dtype, **parts)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    install_attention(pipe.transformer)
    if should_compile(compile_mode, device):
        compile_transformer(pipe.transformer)  # compiles lazily, in the first step of each new shape
    if device.type == "cuda":
        # bf16 VAE with spatial tiling keeps a 163-frame decode within one GPU's memory.
        pipe.vae.enable_tiling()
    _sync(device)
    return Worker(pipe=pipe, device=device, gpu=device_name(device), load_seconds=time.perf_counter() - t0)


def load_workers(folder: Path, devices: list[torch.device], *, compile_mode: str = "off") -> list[Worker]:
    """One pipeline per device, loaded one after the other.

    Not in parallel threads: `from_pretrained` switches process-wide state (meta-device
    init, weight tying) and two concurrent loads can leave a tied T5 weight on `meta`.
    """
    return [load_worker(folder, d, compile_mode=compile_mode) for d in devices]


def free_memory(device: torch.device | None = None) -> None:
    """Return cached blocks after an OOM or when a model is unloaded."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()


@dataclass
class Video:
    """A generated clip and how long each phase took."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    seed: int
    timings: dict[str, float]
    devices: list[str]


def _encode_text(worker: Worker, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return worker.pipe._get_t5_prompt_embeds(prompt=text, num_videos_per_prompt=1,
                                                max_sequence_length=MOCHI.max_prompt_tokens, device=worker.device)


def _predict(worker: Worker, latents: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
    """One transformer forward on `worker`'s device (runs in that worker's thread)."""
    with torch.no_grad():
        x = latents.to(worker.device)
        timestep = t.to(worker.device).expand(x.shape[0]).to(x.dtype)
        return worker.pipe.transformer(hidden_states=x, encoder_hidden_states=embeds, timestep=timestep,
                                       encoder_attention_mask=mask, return_dict=False)[0]


def denoise(item: Item, workers: list[Worker], on_progress: ProgressFn | None = None,
            timings: dict[str, float] | None = None, *, resume: Checkpoint | None = None,
            stop: threading.Event | None = None) -> torch.Tensor:
    """Text encoding and the denoising loop; returns latents on the first worker's device.

    With guidance and two workers, the conditional branch runs on the first and the
    unconditional on the second, at the same time, combined each step on the first.
    `resume` continues from a checkpoint's step and latents; when `stop` is set, the loop
    ends after the step in flight and raises `Stopped` with the latents to save.
    """
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule, retrieve_timesteps

    on_progress = on_progress or (lambda phase, step, total: None)
    timings = timings if timings is not None else {}
    main = workers[0]
    pipe = main.pipe
    cfg = item.guidance_scale > 1.0  # the pipeline's do_classifier_free_guidance
    split = cfg and len(workers) >= 2
    other = workers[1] if split else None
    n = item.num_inference_steps

    # 1. Text encoding (each branch on the device that will use it).
    on_progress("encoding_text", 0, n)
    t0 = time.perf_counter()
    negative = item.negative_prompt or ""
    if split:
        assert other is not None
        uncond_future = other.executor.submit(_encode_text, other, negative)
        embeds, mask = _encode_text(main, item.prompt)
        neg_embeds, neg_mask = uncond_future.result()
    else:
        embeds, mask = _encode_text(main, item.prompt)
        if cfg:
            neg_embeds, neg_mask = _encode_text(main, negative)
            embeds, mask = torch.cat([neg_embeds, embeds]), torch.cat([neg_mask, mask])
    for w in workers[: 2 if split else 1]:
        _sync(w.device)
    timings["text_encode"] = time.perf_counter() - t0

    # 2. Latents from a CPU generator, so a seed gives the same noise on any device.
    generator = torch.Generator("cpu").manual_seed(item.seed)
    latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels, item.height, item.width,
                                   item.num_frames, embeds.dtype, main.device, generator)

    # 3. Mochi's linear-quadratic sigma schedule, as in the pipeline.
    sigmas = np.array(linear_quadratic_schedule(n, 0.025))
    scheduler = pipe.scheduler
    timesteps, _ = retrieve_timesteps(scheduler, n, main.device, None, sigmas)
    begin = 0
    if resume is not None and resume.latents.shape == latents.shape:
        begin, latents = resume.step, resume.latents.to(main.device, latents.dtype)
    elif resume is not None:
        warnings.warn(f"checkpoint latents {tuple(resume.latents.shape)} do not fit {tuple(latents.shape)}: "
                      "starting over", RuntimeWarning, stacklevel=2)
    scheduler.set_begin_index(begin)
    if begin:  # the denoise time below covers only the steps from `begin` on
        timings["resumed_at_step"] = begin

    # 4. Denoising loop; guidance and the scheduler step run in fp32 like the pipeline.
    on_progress("denoising", begin, n)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, t in enumerate(timesteps[begin:], start=begin):
            if split:
                assert other is not None
                uncond_future = other.executor.submit(_predict, other, latents, neg_embeds, neg_mask, t)
                cond = _predict(main, latents, embeds, mask, t).float()
                uncond = uncond_future.result().to(main.device).float()
                noise = uncond + item.guidance_scale * (cond - uncond)
            elif cfg:
                out = _predict(main, torch.cat([latents] * 2), embeds, mask, t).float()
                uncond, cond = out.chunk(2)
                noise = uncond + item.guidance_scale * (cond - uncond)
            else:
                noise = _predict(main, latents, embeds, mask, t).float()
            latents = scheduler.step(noise, t, latents.to(torch.float32), return_dict=False)[0].to(embeds.dtype)
            on_progress("denoising", i + 1, n)
            if stop is not None and stop.is_set():
                raise Stopped(Checkpoint(step=i + 1, latents=latents.cpu()))
    _sync(main.device)
    timings["denoise"] = time.perf_counter() - t0
    return latents


def decode(worker: Worker, latents: torch.Tensor) -> np.ndarray:
    """Latents to (F, H, W, 3) uint8 frames with the worker's VAE (denormalised as in the pipeline)."""
    vae = worker.pipe.vae
    cfg = vae.config
    with torch.no_grad():
        if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
            channels = latents.shape[1]
            mean = torch.tensor(cfg.latents_mean).view(1, channels, 1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(cfg.latents_std).view(1, channels, 1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / cfg.scaling_factor + mean
        else:
            latents = latents / cfg.scaling_factor
        video = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        frames = worker.pipe.video_processor.postprocess_video(video, output_type="pt")[0]  # (F, C, H, W) in [0, 1]
        frames = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return frames.cpu().numpy()


def generate(item: Item, workers: list[Worker], on_progress: ProgressFn | None = None, *,
             resume: Checkpoint | None = None, stop: threading.Event | None = None,
             on_denoised: Callable[[Checkpoint], object] | None = None) -> Video:
    """Make one item's frames on `workers` (one device, or two for split guidance); see `denoise`.
    `on_denoised` gets the finished latents before the VAE decode starts (the job image stores them
    as the item's checkpoint, so a pod killed while decoding or uploading costs only the decode)."""
    timings: dict[str, float] = {}
    latents = denoise(item, workers, on_progress, timings, resume=resume, stop=stop)
    if on_denoised is not None and timings.get("resumed_at_step") != item.num_inference_steps:
        on_denoised(Checkpoint(step=item.num_inference_steps, latents=latents.cpu()))
    if on_progress:
        on_progress("decoding", item.num_inference_steps, item.num_inference_steps)
    t0 = time.perf_counter()
    frames = decode(workers[0], latents)
    timings["decode"] = time.perf_counter() - t0
    used = workers[: 2 if (item.guidance_scale > 1.0 and len(workers) >= 2) else 1]
    return Video(frames=frames, seed=item.seed, timings=timings, devices=[str(w.device) for w in used])
