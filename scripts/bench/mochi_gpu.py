#!/usr/bin/env python
"""Mochi speed on one GPU: seconds per denoising step, the attention kernel that ran, VAE decode, memory.

Builds the full-size MochiTransformer3DModel and AutoencoderKLMochi with random weights (their
default configs are the released model's) in bf16 on the GPU, and measures at 848x480, most
important first, so a run cut short still answers the main questions:
  1. each SDPA backend alone (cuDNN, Flash, memory-efficient) on the 163-frame joint attention;
  2. 163 frames, eager: one guided step (batch 2: empty negative prompt + prompt) and one batch-1
     forward, with our attention processor and with diffusers' stock one; a profile of the batch-1
     forward names the attention kernel that ran and its share of GPU time;
  3. the VAE decode of 163 frames, tiled (what the pod does) and not;
  4. 163 frames with torch.compile (regional: each transformer block), ours;
  5. 85 and 31 frames, eager, both processors; then stock compiled.
With two GPUs visible it also times the guided step split over both (the pod's one-video path).
After every row it rewrites the JSON and the table between the mochi_gpu markers in
docs/performance.md, and `--budget-s` skips what would not finish in time.

  python scripts/bench/mochi_gpu.py --budget-s 480      # the full run, on a GPU
  python scripts/bench/mochi_gpu.py --smoke             # tiny configs on the CPU: checks the script works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import warnings  # noqa: E402

import torch  # noqa: E402

from gpu_probes import profile_kernels, time_sdpa_backends  # noqa: E402
from jobimage.models.mochi import MOCHI  # noqa: E402
from jobimage.attention import T2VMochiAttnProcessor, install_attention, install_stock_attention  # noqa: E402

# diffusers' Mochi RoPE opens an fp32 autocast region; on CPU (smoke runs) torch warns on every call.
warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported", category=UserWarning)

HEIGHT, WIDTH = 480, 848
FRAMES = (163, 85, 31)
PROMPT_TOKENS = 64  # a typical prompt; the empty negative prompt is 1 token (</s>)
STEPS_PER_VIDEO = 64
REFERENCE_TFLOPS = 700.0  # the rate the issue's floor is counted at (304 s for a 163-frame video)
MARK_BEGIN, MARK_END = "<!-- mochi_gpu:begin -->", "<!-- mochi_gpu:end -->"
# Rough seconds each kind of row takes at 163 frames on an H200 (2026-12-04 run: compile 35 s + the
# timed calls), for --budget-s.
COST_163 = {"sdpa": 10, "step": 25, "decode": 40, "compile": 90}
# The processors a step row can run: diffusers' own, ours (what the pod runs), and ours with q, k, v
# laid out heads first (T2VMochiAttnProcessor(heads_first=True)), a candidate not yet measured.
ATTENTIONS = ("stock", "ours", "ours-bhsd")


@dataclass
class Row:
    """One transformer configuration: step times, rate, kernel, memory."""

    frames: int
    attention: str  # one of ATTENTIONS
    compiled: bool
    height: int
    width: int
    tokens: int  # video tokens per sample
    step_1gpu_s: float | None = None  # guided step, batch 2, one device
    forward_b1_s: float | None = None  # one conditional forward, batch 1
    step_split_s: float | None = None  # guided step split over two devices
    compile_s: float | None = None  # first calls (both batch sizes), compilation included
    tflops_step_1gpu: float | None = None
    denoise_1gpu_s: float | None = None  # 64 guided steps
    floor_ratio: float | None = None  # denoise / (FLOPs at REFERENCE_TFLOPS)
    split_ratio: float | None = None  # split step / one-GPU step
    attention_kernel: str | None = None  # what the profile of a batch-1 forward saw
    attention_share: float | None = None  # of that forward's GPU time
    gemm_share: float | None = None  # matmul kernels' share; 1 - both = elementwise work, copies, norms
    top_kernels: list = field(default_factory=list)
    attention_kernels: dict = field(default_factory=dict)  # name -> ms of every kernel counted as attention
    peak_gib: float | None = None
    max_abs_diff_vs_stock: float | None = None  # guided-step output, ours vs stock, same inputs
    rel_err_vs_stock: float | None = None
    max_abs_diff_vs_eager: float | None = None  # compiled rows: vs the eager row of the same processor
    new_prompt_s: float | None = None  # compiled: first guided step with another prompt length
    new_prompt_graphs: int | None = None  # graphs compiled for it (0: the compiled blocks were reused)
    warm_compile_s: float | None = None  # compiled: first calls again after a dynamo reset (inductor's cache warm)
    notes: list[str] = field(default_factory=list)


@dataclass
class DecodeRow:
    """The VAE decode of one clip."""

    frames: int
    tiled: bool
    decode_s: float | None = None
    peak_gib: float | None = None
    notes: list[str] = field(default_factory=list)


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int]:
    return (frames - 1) // MOCHI.temporal_factor + 1, height // 8, width // 8


def video_tokens(frames: int, height: int, width: int) -> int:
    return MOCHI.latent_tokens(num_frames=frames, height=height, width=width)


def forward_flops(cfg: dict, frames: int, height: int, width: int, text_tokens: int) -> float:
    """Matmul FLOPs of one batch-1 transformer forward of the model built from `cfg`."""
    return MOCHI.forward_flops(video_tokens(frames, height, width), prompt_tokens=text_tokens, layers=cfg["num_layers"],
                               width=cfg["num_attention_heads"] * cfg["attention_head_dim"],
                               context_width=cfg["pooled_projection_dim"])


def build(smoke: bool, device: torch.device):
    """The transformer and VAE with random weights, directly on `device` in the bench dtype."""
    from diffusers import AutoencoderKLMochi, MochiTransformer3DModel

    from jobimage.models import tiny

    dtype = torch.float32 if smoke else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.manual_seed(0)  # both GPUs of the split run get identical weights
    try:
        torch.set_default_dtype(dtype)
        with device:
            transformer = MochiTransformer3DModel(**(tiny.TRANSFORMER_CONFIG if smoke else {})).eval()
            vae = AutoencoderKLMochi(**(tiny.VAE_CONFIG if smoke else {})).eval()
    finally:
        torch.set_default_dtype(previous)
    return transformer, vae


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(transformer, frames: int, height: int, width: int, batch: int, device: torch.device, dtype,
            prompt_tokens: int = PROMPT_TOKENS):
    lf, lh, lw = latent_shape(frames, height, width)
    cfg = transformer.config
    gen = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(batch, cfg.in_channels, lf, lh, lw, generator=gen).to(device, dtype)
    text = torch.randn(batch, 256, cfg.text_embed_dim, generator=gen).to(device, dtype)
    mask = torch.zeros(batch, 256, dtype=torch.bool)
    lengths = [1, prompt_tokens] if batch == 2 else [prompt_tokens]
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    t = torch.full((batch,), 500.0).to(device, dtype)
    return x, text, mask.to(device), t


def _forward(transformer, inputs):
    x, text, mask, t = inputs
    with torch.no_grad():
        return transformer(hidden_states=x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask,
                           return_dict=False)[0]


def _time(fn, device: torch.device, warmup: int, iters: int):
    """(best seconds of `iters` calls after `warmup` calls, the last call's result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


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
    return _time(step, devices[0], warmup, iters)[0]


def set_compiled(transformer, on: bool) -> None:
    """Regional compilation: each transformer block separately (short compile, same speed)."""
    for block in transformer.transformer_blocks:
        if on and not hasattr(block, "_t2v_eager_forward"):
            block._t2v_eager_forward = block.forward
            block.forward = torch.compile(block.forward, dynamic=False)
        elif not on and hasattr(block, "_t2v_eager_forward"):
            block.forward = block._t2v_eager_forward
            del block._t2v_eager_forward


def make_plan(frames: list[int], attentions: list[str], compiles: list[bool], decode: bool) -> list[tuple]:
    """The rows in the order they answer the most: every length eager, the tiled decode the pod
    does, the longest clip compiled with our processor, the untiled decode, stock compiled."""
    longest = max(frames)
    order = sorted(attentions, key=lambda a: a != "ours")  # ours first: it is what the pod runs
    plan: list[tuple] = [("sdpa", longest, None, None)]
    if False in compiles:
        plan += [("step", f, a, False) for f in sorted(set(frames), reverse=True) for a in order]
    if decode:
        plan += [("decode", longest, True, None)]
    if True in compiles:
        plan += [("step", longest, order[0], True)]
    if decode:
        plan += [("decode", longest, False, None)]
    if True in compiles:
        plan += [("step", longest, a, True) for a in order[1:]]
    return plan


def parse_rows(spec: str) -> list[tuple]:
    """'step:163:ours:compiled,decode:163:tiled,sdpa:163' -> plan tuples as make_plan writes them."""
    plan: list[tuple] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, frames, *rest = part.split(":")
        if kind == "step":
            if not rest or rest[0] not in ATTENTIONS:
                raise SystemExit(f"--rows: {part!r} names no attention ({', '.join(ATTENTIONS)})")
            plan.append(("step", int(frames), rest[0], rest[1:] == ["compiled"]))
        elif kind == "decode":
            plan.append(("decode", int(frames), rest[:1] != ["untiled"], None))
        elif kind == "sdpa":
            plan.append(("sdpa", int(frames), None, None))
        else:
            raise SystemExit(f"--rows: unknown row kind {kind!r} in {part!r} (step, decode, sdpa)")
    return plan


class Bench:
    """One run: the models, the report so far, and where it is written after every row."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.devices = [torch.device(d) for d in args.devices.split(",")] if args.devices else (
            [torch.device("cpu")] if args.smoke or not torch.cuda.is_available()
            else [torch.device("cuda", i) for i in range(torch.cuda.device_count())])
        self.main = self.devices[0]
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.height, self.width = (64, 96) if args.smoke else (HEIGHT, WIDTH)
        self.transformer, self.vae = build(args.smoke, self.main)
        self.second = (build(args.smoke, self.devices[1])[0]
                       if len(self.devices) >= 2 and not args.no_split else None)
        self.cfg = dict(self.transformer.config)
        self.outputs: dict[tuple, torch.Tensor] = {}  # (frames, attention, compiled) -> guided-step output
        gpu = torch.cuda.get_device_name(self.main) if self.main.type == "cuda" else platform.processor() or "cpu"
        self.report: dict = {
            "bench": "mochi_gpu", "smoke": args.smoke, "device": gpu, "devices": [str(d) for d in self.devices],
            "dtype": str(self.dtype), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if self.main.type == "cuda" else None,
            "diffusers": __import__("diffusers").__version__, "size": f"{self.width}x{self.height}",
            "flops_per_forward_163": None if args.smoke else forward_flops(self.cfg, 163, HEIGHT, WIDTH, PROMPT_TOKENS),
            "matmul_tflops": self._matmul_tflops(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sdpa": [], "rows": [], "decode": [], "skipped": [], "build_s": round(time.monotonic() - self.t0, 1),
        }
        print(f"device {gpu} x{len(self.devices)}; {self.height}x{self.width}; dtype {self.dtype}; "
              f"built in {self.report['build_s']} s", file=sys.stderr, flush=True)

    def _matmul_tflops(self) -> float | None:
        """This GPU's bf16 matmul rate on random data (8192^3): the ceiling the step is compared to."""
        if self.main.type != "cuda":
            return None
        a, b = (torch.randn(8192, 8192, device=self.main, dtype=torch.bfloat16) for _ in range(2))
        seconds, _ = _time(lambda: a @ b, self.main, 3, 10)
        return round(2 * 8192**3 / seconds / 1e12, 1)

    # ---- the rows ----

    def run(self, plan: list[tuple]) -> dict:
        for kind, frames, a, b in plan:
            cost_kind = "compile" if kind == "step" and a is not None and b else kind
            scale = forward_flops(self.cfg, frames, HEIGHT, WIDTH, PROMPT_TOKENS) / forward_flops(
                self.cfg, 163, HEIGHT, WIDTH, PROMPT_TOKENS)
            need = COST_163[cost_kind] * (1.0 if cost_kind in ("compile", "sdpa") else max(scale, 0.2))
            left = self.args.budget_s - (time.monotonic() - self.t0) if self.args.budget_s else None
            label = (f"decode {frames} {'tiled' if a else 'not tiled'}" if kind == "decode" else
                     f"{kind} {frames} {a or ''}{' compiled' if b else ''}".strip())
            if left is not None and left < need:
                self.report["skipped"].append(f"{label} (needs ~{need:.0f} s, {left:.0f} s left)")
                self._write()
                continue
            print(f"[{time.monotonic() - self.t0:6.1f} s] {label}", file=sys.stderr, flush=True)
            try:
                if kind == "sdpa":
                    self.sdpa(frames)
                elif kind == "decode":
                    self.decode(frames, tiled=bool(a))
                else:
                    self.step(frames, a, bool(b))
            except Exception as e:  # one broken row must not cost the rest of a GPU lease
                traceback.print_exc()
                self.report["skipped"].append(f"{label} (failed: {type(e).__name__}: {str(e).splitlines()[0][:200]})")
            self._write()
        return self.report

    def sdpa(self, frames: int) -> None:
        heads, dim = self.cfg["num_attention_heads"], self.cfg["attention_head_dim"]
        tokens = video_tokens(frames, self.height, self.width) + PROMPT_TOKENS
        self.report["sdpa"] = time_sdpa_backends(tokens, heads, dim, self.main, self.dtype)

    def step(self, frames: int, attention: str, compiled: bool) -> None:
        args, main, tr = self.args, self.main, self.transformer
        models = [m for m in (tr, self.second) if m is not None]
        for m in models:
            set_compiled(m, compiled)
            if attention == "stock":
                install_stock_attention(m)
            else:
                install_attention(m, T2VMochiAttnProcessor(heads_first=attention == "ours-bhsd"))
        row = Row(frames=frames, attention=attention, compiled=compiled, height=self.height, width=self.width,
                  tokens=video_tokens(frames, self.height, self.width))
        self.report["rows"].append(row)
        if main.type == "cuda":
            torch.cuda.reset_peak_memory_stats(main)
        try:
            b2 = _inputs(tr, frames, self.height, self.width, 2, main, self.dtype)
            b1 = _inputs(tr, frames, self.height, self.width, 1, main, self.dtype)
            if compiled:  # the first call of each batch size compiles; time it apart
                t0 = time.perf_counter()
                _forward(tr, b2)
                _forward(tr, b1)
                _sync(main)
                row.compile_s = time.perf_counter() - t0
            row.step_1gpu_s, out = _time(lambda: _forward(tr, b2), main, args.warmup, args.iters)
            row.forward_b1_s, _ = _time(lambda: _forward(tr, b1), main, args.warmup, args.iters)
            self._compare(row, out.float())
            del out
            if compiled and self.args.recompile_checks:
                self._recompile_checks(row, b2, b1)
            try:
                prof = profile_kernels(lambda: _forward(tr, b1), main)
                row.attention_kernel, row.attention_share = prof["attention_kernel"], prof["attention_share"]
                row.gemm_share, row.attention_kernels = prof["gemm_share"], prof["attention_kernels"]
                row.top_kernels = prof["top_kernels"]
            except Exception as e:  # the profiler's API moves between torch versions; keep the timings
                row.notes.append(f"profile failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            if self.second is not None:
                u = _inputs(self.second, frames, self.height, self.width, 1, self.devices[1], self.dtype)
                u[2][:, 1:] = False  # the unconditional branch: the 1-token empty prompt
                row.step_split_s = time_split_step([tr, self.second], [b1, u], self.devices[:2],
                                                   args.warmup, args.iters)
        except torch.OutOfMemoryError as e:
            row.notes.append(f"OOM: {str(e).splitlines()[0]}")
        finally:
            self._free()
        flops = 2 * forward_flops(self.cfg, frames, self.height, self.width, PROMPT_TOKENS)  # guided: 2 samples
        if row.step_1gpu_s:
            row.tflops_step_1gpu = flops / row.step_1gpu_s / 1e12
            row.denoise_1gpu_s = STEPS_PER_VIDEO * row.step_1gpu_s
            row.floor_ratio = row.step_1gpu_s / (flops / (REFERENCE_TFLOPS * 1e12))
        if row.step_split_s and row.step_1gpu_s:
            row.split_ratio = row.step_split_s / row.step_1gpu_s
        if main.type == "cuda":
            row.peak_gib = torch.cuda.max_memory_allocated(main) / 2**30

    def _recompile_checks(self, row: Row, b2, b1) -> None:
        """What a pod pays for compilation after the first video: a new prompt length (should
        reuse the compiled blocks) and a new process on the same node (inductor's disk cache)."""
        import torch._dynamo as dynamo
        from torch._dynamo.utils import counters

        tr, main = self.transformer, self.main
        other = _inputs(tr, row.frames, self.height, self.width, 2, main, self.dtype, prompt_tokens=PROMPT_TOKENS // 3)
        graphs = counters["stats"]["unique_graphs"]
        row.new_prompt_s, _ = _time(lambda: _forward(tr, other), main, 0, 1)
        row.new_prompt_graphs = counters["stats"]["unique_graphs"] - graphs
        dynamo.reset()
        t0 = time.perf_counter()
        _forward(tr, b2)
        _forward(tr, b1)
        _sync(main)
        row.warm_compile_s = time.perf_counter() - t0

    def _compare(self, row: Row, out: torch.Tensor) -> None:
        """Output differences: ours vs stock (same frames, eager) and compiled vs eager."""
        self.outputs[(row.frames, row.attention, row.compiled)] = out
        rows = {(r.frames, r.attention, r.compiled): r for r in self.report["rows"]}
        ours, stock = (self.outputs.get((row.frames, a, False)) for a in ("ours", "stock"))
        if not row.compiled and ours is not None and stock is not None:
            target = rows[(row.frames, "ours", False)]
            target.max_abs_diff_vs_stock = float((ours - stock).abs().max())
            target.rel_err_vs_stock = float((ours - stock).norm() / stock.norm())
        eager = self.outputs.get((row.frames, row.attention, False))
        if row.compiled and eager is not None:
            row.max_abs_diff_vs_eager = float((out - eager).abs().max())

    def decode(self, frames: int, tiled: bool) -> None:
        row = DecodeRow(frames=frames, tiled=tiled)
        self.report["decode"].append(row)
        (self.vae.enable_tiling if tiled else self.vae.disable_tiling)()
        lf, lh, lw = latent_shape(frames, self.height, self.width)
        z = torch.randn(1, self.vae.config.latent_channels, lf, lh, lw, generator=torch.Generator("cpu").manual_seed(2))
        z = z.to(self.main, self.dtype)
        if self.main.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.main)
        try:
            with torch.no_grad():
                row.decode_s, _ = _time(lambda: self.vae.decode(z, return_dict=False)[0], self.main, 0, 1)
            if self.main.type == "cuda":
                row.peak_gib = torch.cuda.max_memory_allocated(self.main) / 2**30
        except torch.OutOfMemoryError as e:
            row.notes.append(f"OOM: {str(e).splitlines()[0]}")
        finally:
            self._free()

    def _free(self) -> None:
        if self.main.type == "cuda":
            torch.cuda.empty_cache()

    def _write(self) -> None:
        self.report["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.report, indent=1, default=asdict) + "\n")
        if self.args.docs is not None:
            write_docs(self.args.docs, json.loads(self.args.out.read_text()))


# ---- the docs table ----

def _fmt(v, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def table(report: dict) -> str:
    """The markdown that goes into docs/performance.md between the markers."""
    smoke = " (SMOKE RUN on CPU with tiny configs: not GPU numbers)" if report["smoke"] else ""
    out = [f"Measured {report['measured_at']} on {report['device']} x{len(report['devices'])}, torch {report['torch']}, "
           f"CUDA {report['cuda']}, cuDNN {report['cudnn']}, diffusers {report['diffusers']}, {report['size']}, "
           f"{report['dtype']}{smoke}. bf16 matmul on this GPU: {_fmt(report['matmul_tflops'], '.0f')} TFLOP/s "
           f"(8192³, random data). x floor = step time / (FLOPs at {REFERENCE_TFLOPS:.0f} TFLOP/s).", ""]
    if report["sdpa"]:
        out += ["| SDPA backend alone (B=1, no mask) | layout | tokens | ms | TFLOP/s |", "|---|---|---|---|---|"]
        for s in report["sdpa"]:
            out.append(f"| {s['backend']} | {s.get('layout', 'bhsd')} | {s['tokens']} | "
                       f"{_fmt(s.get('seconds') and s['seconds'] * 1000, '.1f')} | "
                       f"{_fmt(s.get('tflops'), '.0f')}{' ' + s['error'] if s.get('error') else ''} |")
        out.append("")
    out += ["| frames | attention | compile | s/step 1 GPU (CFG) | s/forward B=1 | s/step split 2 GPUs | TFLOP/s | "
            "denoise 64 steps s | x floor | attention kernel (share of GPU time) | peak GiB | max abs diff vs stock |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        kernel = (f"{r['attention_kernel'] or '—'} ({_fmt(r['attention_share'] and 100 * r['attention_share'], '.0f')}%"
                  f" attention, {_fmt(r.get('gemm_share') and 100 * r['gemm_share'], '.0f')}% matmul)")
        note = f" {'; '.join(r['notes'])}" if r["notes"] else ""
        out.append(f"| {r['frames']} | {r['attention']} | {'yes' if r['compiled'] else 'no'} | "
                   f"{_fmt(r['step_1gpu_s'], '.3f')} | {_fmt(r['forward_b1_s'], '.3f')} | "
                   f"{_fmt(r['step_split_s'], '.3f')} | {_fmt(r['tflops_step_1gpu'], '.0f')} | "
                   f"{_fmt(r['denoise_1gpu_s'], '.0f')} | {_fmt(r['floor_ratio'])} | {kernel} | "
                   f"{_fmt(r['peak_gib'], '.1f')} | {_fmt(r['max_abs_diff_vs_stock'], '.3g')}{note} |")
    compiled = [r for r in report["rows"] if r["compiled"]]
    if compiled:
        out += ["", "| torch.compile | frames | attention | first calls (compile) s | new prompt length: first step s "
                "(graphs compiled) | after a reset, inductor cache warm s | max abs diff vs eager |",
                "|---|---|---|---|---|---|---|"]
        for r in compiled:
            out.append(f"| regional, per block | {r['frames']} | {r['attention']} | {_fmt(r['compile_s'], '.1f')} | "
                       f"{_fmt(r.get('new_prompt_s'), '.2f')} ({_fmt(r.get('new_prompt_graphs'), 'd')}) | "
                       f"{_fmt(r.get('warm_compile_s'), '.1f')} | {_fmt(r['max_abs_diff_vs_eager'], '.3g')} |")
    if report["decode"]:
        out += ["", "| VAE decode | frames | s | peak GiB |", "|---|---|---|---|"]
        for d in report["decode"]:
            note = f" {'; '.join(d['notes'])}" if d["notes"] else ""
            out.append(f"| {'tiled' if d['tiled'] else 'not tiled'} | {d['frames']} | {_fmt(d['decode_s'], '.1f')}{note} | "
                       f"{_fmt(d['peak_gib'], '.1f')} |")
    if report["skipped"]:
        out += ["", "Not measured in this run (time budget): " + "; ".join(report["skipped"]) + "."]
    return "\n".join(out) + "\n"


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
    parser.add_argument("--frames", help="comma list (default 163,85,31; 13,7 with --smoke)")
    parser.add_argument("--attention", choices=[*ATTENTIONS, "both"], default="both",
                        help="both: stock and ours")
    parser.add_argument("--compile", choices=["off", "on", "both"],
                        help="torch.compile rows (default both; off with --smoke: inductor takes minutes on a CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=1, help="timed calls after the warm-up (best is kept)")
    parser.add_argument("--budget-s", type=float, help="skip rows that would not finish within this many seconds")
    parser.add_argument("--no-split", action="store_true", help="skip the two-device guided step")
    parser.add_argument("--no-decode", action="store_true", help="skip the VAE decode timings")
    parser.add_argument("--out", type=Path, help="JSON path (default scripts/bench/results/mochi_gpu[_smoke].json)")
    parser.add_argument("--docs", type=Path, help="markdown to update (default docs/performance.md; none in smoke)")
    parser.add_argument("--rows", help="explicit plan instead of the default, e.g. "
                        "'step:163:ours,step:163:ours:compiled,decode:163:tiled' (kinds: sdpa, step, decode)")
    parser.add_argument("--recompile-checks", action="store_true",
                        help="compiled rows also time a new prompt length and a warm-cache recompile")
    parser.add_argument("--from-json", type=Path, help="only rewrite --docs (default docs/performance.md) from a saved JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        write_docs(args.docs or ROOT / "docs/performance.md", report)
        print(table(report))
        return 0
    args.compile = args.compile or ("off" if args.smoke else "both")
    args.out = args.out or ROOT / "scripts/bench/results" / ("mochi_gpu_smoke.json" if args.smoke else "mochi_gpu.json")
    if args.docs is None and not args.smoke:
        args.docs = ROOT / "docs/performance.md"
    frames = [int(f) for f in args.frames.split(",")] if args.frames else ([13, 7] if args.smoke else list(FRAMES))
    attentions = ["stock", "ours"] if args.attention == "both" else [args.attention]
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    import torch._dynamo as dynamo

    dynamo.config.cache_size_limit = 64  # 3 lengths x 2 processors x 2 batch sizes per block
    bench = Bench(args)
    plan = parse_rows(args.rows) if args.rows else make_plan(frames, attentions, compiles, decode=not args.no_decode)
    report = bench.run(plan)
    print(table(json.loads(json.dumps(report, default=asdict))))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
