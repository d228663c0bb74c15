#!/usr/bin/env python
"""Mochi speed on H100s: seconds per denoising step, VAE decode, peak memory; stock vs our attention.

Builds the full-size MochiTransformer3DModel and AutoencoderKLMochi with random
weights (their default configs are the released model's) in bf16, and times at
848x480 for 31, 85 and 163 frames:
  - one guided step on one GPU (batch 2: unconditional + conditional),
  - one forward of batch 1 (what each GPU does per step when guidance is split),
  - one guided step split over two GPUs (when two are visible),
  - the VAE decode (bf16, tiled) of the whole clip,
with the stock MochiAttnProcessor2_0 and with ours, with and without torch.compile.
It writes a JSON file and replaces the table between the mochi_gpu markers in
docs/performance.md.

  python scripts/bench/mochi_gpu.py                 # the full run, on a GPU node
  python scripts/bench/mochi_gpu.py --smoke         # tiny configs on the CPU: checks the script works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

import torch  # noqa: E402

from jobimage.attention import install_attention, install_stock_attention  # noqa: E402

# diffusers' Mochi RoPE opens an fp32 autocast region; on CPU (smoke runs) torch warns on every call.
warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported", category=UserWarning)

HEIGHT, WIDTH = 480, 848
FRAMES = (31, 85, 163)
PROMPT_TOKENS = 64  # a typical prompt; the empty negative prompt is 1 token (</s>)
STEPS_PER_VIDEO = 64
H100_DENSE_BF16_TFLOPS = 700.0  # the reference rate used by the issue's floor
MARK_BEGIN, MARK_END = "<!-- mochi_gpu:begin -->", "<!-- mochi_gpu:end -->"


@dataclass
class Row:
    """One measured configuration."""

    frames: int
    attention: str  # stock | ours
    compiled: bool
    height: int
    width: int
    tokens: int  # video tokens per sample
    step_1gpu_s: float | None = None  # guided step, batch 2, one device
    forward_b1_s: float | None = None  # one conditional forward, batch 1
    step_split_s: float | None = None  # guided step split over two devices
    tflops_step_1gpu: float | None = None
    video_1gpu_s: float | None = None  # 64 guided steps + decode, projected
    video_split_s: float | None = None
    floor_ratio: float | None = None  # video_1gpu denoise time / (FLOPs / 700 TFLOP/s)
    split_ratio: float | None = None  # split step / one-GPU step
    decode_s: float | None = None
    peak_gib: float | None = None
    max_abs_diff_vs_stock: float | None = None
    notes: list[str] = field(default_factory=list)


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int]:
    return (frames - 1) // 6 + 1, height // 8, width // 8


def forward_flops(cfg: dict, frames: int, height: int, width: int, text_tokens: int) -> float:
    """Matmul FLOPs of one batch-1 transformer forward (linear layers + attention)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    c = cfg["pooled_projection_dim"]
    lf, lh, lw = latent_shape(frames, height, width)
    p = cfg["patch_size"]
    n = lf * (lh // p) * (lw // p)
    t = text_tokens
    visual = 4 * d * d + 3 * d * ((4 * d * 2) // 3)  # q, k, v, out + SwiGLU feed-forward
    text = 3 * c * d + d * c + 3 * c * ((4 * c * 2) // 3)  # add_q/k/v, to_add_out, context feed-forward
    attention = 4 * (n + t) ** 2 * d  # QK^T and AV
    return cfg["num_layers"] * (2 * n * visual + 2 * t * text + attention)


def build(args: argparse.Namespace, device: torch.device):
    """The transformer (and VAE) with random weights, directly on `device` in the bench dtype."""
    from diffusers import AutoencoderKLMochi, MochiTransformer3DModel

    from jobimage import tiny

    dtype = torch.float32 if args.smoke else torch.bfloat16
    t_cfg = dict(tiny.TRANSFORMER_CONFIG) if args.smoke else {}
    v_cfg = dict(tiny.VAE_CONFIG) if args.smoke else {}
    previous = torch.get_default_dtype()
    torch.manual_seed(0)  # both GPUs of the split run get identical weights
    try:
        torch.set_default_dtype(dtype)
        with device:
            transformer = MochiTransformer3DModel(**t_cfg).eval()
            vae = AutoencoderKLMochi(**v_cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    if device.type == "cuda":
        vae.enable_tiling()
    return transformer, vae, dict(transformer.config)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(transformer, frames: int, height: int, width: int, batch: int, device: torch.device, dtype):
    lf, lh, lw = latent_shape(frames, height, width)
    cfg = transformer.config
    gen = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(batch, cfg.in_channels, lf, lh, lw, generator=gen).to(device, dtype)
    text = torch.randn(batch, 256, cfg.text_embed_dim, generator=gen).to(device, dtype)
    mask = torch.zeros(batch, 256, dtype=torch.bool)
    lengths = [1, PROMPT_TOKENS] if batch == 2 else [PROMPT_TOKENS]
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    t = torch.full((batch,), 500.0).to(device, dtype)
    return x, text, mask.to(device), t


def _forward(transformer, inputs):
    x, text, mask, t = inputs
    with torch.no_grad():
        return transformer(hidden_states=x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask,
                           return_dict=False)[0]


def _time(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def time_split_step(models: list, inputs_by_device: list, devices: list, warmup: int, iters: int) -> float:
    """A guided step as the pod runs it on two devices: both branches at once, combined on the first."""

    def step():
        out: dict[int, torch.Tensor] = {}

        def branch(i):
            out[i] = _forward(models[i], inputs_by_device[i])

        other = threading.Thread(target=branch, args=(1,))
        other.start()
        branch(0)
        other.join()
        uncond = out[1].to(devices[0]).float()
        cond = out[0].float()
        return uncond + 4.5 * (cond - uncond)

    for d in devices[1:]:
        _sync(d)
    return _time(step, devices[0], warmup, iters)


def time_decode(vae, frames: int, height: int, width: int, device: torch.device, dtype) -> float:
    lf, lh, lw = latent_shape(frames, height, width)
    z = torch.randn(1, vae.config.latent_channels, lf, lh, lw, generator=torch.Generator("cpu").manual_seed(2))
    z = z.to(device, dtype)

    def decode():
        with torch.no_grad():
            return vae.decode(z, return_dict=False)[0]

    return _time(decode, device, 0, 1)


def set_compiled(transformer, on: bool) -> None:
    """Regional compilation: each transformer block separately (short compile, same speed)."""
    for block in transformer.transformer_blocks:
        if on and not hasattr(block, "_t2v_eager_forward"):
            block._t2v_eager_forward = block.forward
            block.forward = torch.compile(block.forward, dynamic=False)
        elif not on and hasattr(block, "_t2v_eager_forward"):
            block.forward = block._t2v_eager_forward
            del block._t2v_eager_forward


def run(args: argparse.Namespace) -> dict:
    devices = [torch.device(d) for d in args.devices.split(",")] if args.devices else (
        [torch.device("cpu")] if args.smoke or not torch.cuda.is_available()
        else [torch.device("cuda", i) for i in range(torch.cuda.device_count())])
    dtype = torch.float32 if args.smoke else torch.bfloat16
    height, width = (64, 96) if args.smoke else (HEIGHT, WIDTH)
    frames_list = [int(f) for f in args.frames.split(",")] if args.frames else ([7, 13] if args.smoke else FRAMES)
    attentions = ["stock", "ours"] if args.attention == "both" else [args.attention]
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    import torch._dynamo as dynamo

    dynamo.config.cache_size_limit = 64  # 3 lengths x 2 processors x 2 batch sizes per block
    main = devices[0]
    transformer, vae, cfg = build(args, main)
    second = build(args, devices[1])[0] if len(devices) >= 2 and not args.no_split else None
    gpu = torch.cuda.get_device_name(main) if main.type == "cuda" else platform.processor() or "cpu"
    print(f"device {gpu} x{len(devices)}; frames {frames_list}; {height}x{width}; dtype {dtype}", file=sys.stderr)

    rows: list[Row] = []
    for compiled in compiles:
        set_compiled(transformer, compiled)
        if second is not None:
            set_compiled(second, compiled)
        for frames in frames_list:
            reference = None
            for attention in attentions:
                for model in filter(None, (transformer, second)):
                    (install_stock_attention if attention == "stock" else install_attention)(model)
                lf, lh, lw = latent_shape(frames, height, width)
                row = Row(frames=frames, attention=attention, compiled=compiled, height=height, width=width,
                          tokens=lf * (lh // 2) * (lw // 2))
                if main.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(main)
                try:
                    b2 = _inputs(transformer, frames, height, width, 2, main, dtype)
                    b1 = _inputs(transformer, frames, height, width, 1, main, dtype)
                    row.step_1gpu_s = _time(lambda: _forward(transformer, b2), main, args.warmup, args.iters)
                    row.forward_b1_s = _time(lambda: _forward(transformer, b1), main, args.warmup, args.iters)
                    out = _forward(transformer, b2).float()
                    if reference is None:
                        reference = out
                    else:
                        row.max_abs_diff_vs_stock = float((out - reference).abs().max())
                    del out
                    if second is not None:
                        u = _inputs(second, frames, height, width, 1, devices[1], dtype)
                        u[2][:, 1:] = False  # the unconditional branch: the 1-token empty prompt
                        row.step_split_s = time_split_step([transformer, second], [b1, u], devices[:2],
                                                           args.warmup, args.iters)
                    if attention == attentions[-1] and not compiled and not args.no_decode:
                        row.decode_s = time_decode(vae, frames, height, width, main, dtype)
                except torch.OutOfMemoryError as e:
                    row.notes.append(f"OOM: {str(e).splitlines()[0]}")
                    torch.cuda.empty_cache()
                flops = 2 * forward_flops(cfg, frames, height, width, PROMPT_TOKENS)  # guided step = 2 samples
                if row.step_1gpu_s:
                    row.tflops_step_1gpu = flops / row.step_1gpu_s / 1e12
                    denoise = STEPS_PER_VIDEO * row.step_1gpu_s
                    row.video_1gpu_s = denoise + (row.decode_s or 0.0)
                    row.floor_ratio = denoise / (STEPS_PER_VIDEO * flops / (H100_DENSE_BF16_TFLOPS * 1e12))
                if row.step_split_s and row.step_1gpu_s:
                    row.video_split_s = STEPS_PER_VIDEO * row.step_split_s + (row.decode_s or 0.0)
                    row.split_ratio = row.step_split_s / row.step_1gpu_s
                if main.type == "cuda":
                    row.peak_gib = torch.cuda.max_memory_allocated(main) / 2**30
                rows.append(row)
                print(json.dumps(asdict(row)), file=sys.stderr, flush=True)
    decode_by_frames = {r.frames: r.decode_s for r in rows if r.decode_s is not None}
    for r in rows:  # decode was timed once per length; every row's projection includes it
        if r.decode_s is None and r.frames in decode_by_frames:
            r.decode_s = decode_by_frames[r.frames]
            if r.video_1gpu_s is not None:
                r.video_1gpu_s += r.decode_s
            if r.video_split_s is not None:
                r.video_split_s += r.decode_s
    return {
        "bench": "mochi_gpu", "smoke": args.smoke, "device": gpu, "devices": [str(d) for d in devices],
        "dtype": str(dtype), "torch": torch.__version__, "cuda": torch.version.cuda,
        "diffusers": __import__("diffusers").__version__, "flops_per_forward_163": forward_flops(
            cfg, 163, HEIGHT, WIDTH, PROMPT_TOKENS) if not args.smoke else None,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": [asdict(r) for r in rows],
    }


def _fmt(v, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def table(report: dict) -> str:
    """The markdown table that goes into docs/performance.md."""
    head = (f"Measured {report['measured_at']} on {report['device']} x{len(report['devices'])}, "
            f"torch {report['torch']}, CUDA {report['cuda']}, diffusers {report['diffusers']}"
            f"{' (SMOKE RUN on CPU with tiny configs: not H100 numbers)' if report['smoke'] else ''}.\n\n")
    lines = ["| frames | attention | compile | s/step 1 GPU (CFG) | s/forward B=1 | s/step split 2 GPUs | "
             "TFLOP/s | video 1 GPU s | x floor | split/1 GPU | decode s | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['frames']} | {r['attention']} | {'yes' if r['compiled'] else 'no'} | "
                     f"{_fmt(r['step_1gpu_s'], '.3f')} | {_fmt(r['forward_b1_s'], '.3f')} | "
                     f"{_fmt(r['step_split_s'], '.3f')} | {_fmt(r['tflops_step_1gpu'], '.0f')} | "
                     f"{_fmt(r['video_1gpu_s'], '.0f')} | {_fmt(r['floor_ratio'])} | {_fmt(r['split_ratio'])} | "
                     f"{_fmt(r['decode_s'], '.1f')} | {_fmt(r['peak_gib'], '.1f')} |")
    return head + "\n".join(lines) + "\n"


def write_docs(path: Path, report: dict) -> None:
    """Replace the text between the mochi_gpu markers (or append a section with them)."""
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{MARK_BEGIN}\n{table(report)}{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        before, rest = text.split(MARK_BEGIN, 1)
        text = before + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU; checks the logic only")
    parser.add_argument("--devices", help="e.g. cuda:0,cuda:1 (default: every GPU; cpu with --smoke)")
    parser.add_argument("--frames", help="comma list (default 31,85,163; 7,13 with --smoke)")
    parser.add_argument("--attention", choices=["stock", "ours", "both"], default="both")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--no-split", action="store_true", help="skip the two-device guided step")
    parser.add_argument("--no-decode", action="store_true", help="skip the VAE decode timing")
    parser.add_argument("--out", type=Path, help="JSON path (default scripts/bench/results/mochi_gpu[_smoke].json)")
    parser.add_argument("--docs", type=Path, help="markdown to update (default docs/performance.md; none in smoke)")
    args = parser.parse_args(argv)
    if args.smoke and args.compile == "both":
        args.compile = "off"  # inductor on a 2-core CPU takes minutes; pass --compile on to try it anyway
    report = run(args)
    out = args.out or ROOT / "scripts/bench/results" / ("mochi_gpu_smoke.json" if args.smoke else "mochi_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    docs = args.docs or (None if args.smoke else ROOT / "docs/performance.md")
    if docs is not None:
        write_docs(docs, report)
    print(table(report))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
