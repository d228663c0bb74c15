"""What ran on the GPU: the attention kernel SDPA picked (from a profile) and each SDPA backend's own rate.

`mochi_gpu.py` asks these two questions of every configuration it times: a step that is slow
for its FLOPs is most often the attention running on a slower kernel than the one we asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Substrings of kernel (CUDA) or operator (CPU) names -> the SDPA backend they belong to.
# cuDNN's fused attention kernels are named cudnn_generated_fort_native_sdpa_...; PyTorch's Flash
# kernels pytorch_flash::flash_fwd_...; the memory-efficient ones fmha_cutlassF_...
_ATTENTION_KERNELS = (
    ("cudnn", ("native_sdpa", "cudnn_sdpa")),  # not every cudnn kernel: convolutions are cudnn too
    ("flash", ("flash_fwd", "flash_attention", "flash::")),
    ("efficient", ("fmha", "cutlassf", "efficient_attention", "mem_eff")),
    ("math", ("softmax",)),
)
# cuBLAS / cuBLASLt matmul kernels (sm90_xmma_gemm_..., nvjet_...); on CPU the linear operators.
_GEMM_MARKS = ("gemm", "nvjet", "xmma", "addmm", "aten::mm", "aten::bmm")
BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")


def attention_kind(name: str) -> str | None:
    """The SDPA backend a kernel name belongs to, or None for every other kernel."""
    low = name.lower()
    for kind, marks in _ATTENTION_KERNELS:
        if any(m in low for m in marks):
            return kind
    return None


def profile_kernels(fn: Callable[[], object], device: torch.device, top: int = 8) -> dict:
    """Run `fn` once under the profiler: the attention backends seen, their share of device time,
    and the `top` kernels by time (on CPU: operators, so the smoke run exercises the same code)."""
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    by_name: dict[str, float] = {}
    for evt in prof.events():  # self time, so nested operators are not counted twice
        if device.type == "cuda":
            if evt.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = evt.time_range.elapsed_us()  # a kernel: its own duration
        else:
            us = evt.self_cpu_time_total
        by_name[evt.name] = by_name.get(evt.name, 0.0) + float(us)
    total = sum(by_name.values()) or 1.0
    kinds: dict[str, float] = {}
    named: dict[str, float] = {}  # every kernel counted as attention, so a misfiled one shows
    gemm = 0.0
    for name, us in by_name.items():
        kind = attention_kind(name)
        if kind:
            kinds[kind] = kinds.get(kind, 0.0) + us
            named[name[:160]] = round(us / 1000, 3)
        elif any(m in name.lower() for m in _GEMM_MARKS):
            gemm += us
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    return {
        "attention_kernel": "+".join(sorted(kinds, key=lambda k: -kinds[k])) or None,
        "attention_share": round(sum(kinds.values()) / total, 4),
        "attention_kernels": named,
        "gemm_share": round(gemm / total, 4),  # the rest is elementwise work, copies, norms
        "device_ms": round(total / 1000, 3),
        "top_kernels": [{"name": n[:160], "ms": round(us / 1000, 3), "share": round(us / total, 4)}
                        for n, us in ranked],
    }


# The two memory layouts SDPA gets: "bhsd" contiguous (B, H, S, D), as a standalone benchmark
# makes it; "bshd" a (B, S, H, D) tensor seen through transpose(1, 2), which is what Mochi's
# processors hand it (heads split off the projections, then moved). In the 163-frame step cuDNN ran
# at 553 TFLOP/s against 580 alone on "bhsd"; timing both tells whether the layout is the gap.
LAYOUTS = ("bhsd", "bshd")


def sdpa_inputs(tokens: int, heads: int, head_dim: int, layout: str, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """q, k, v of shape (1, heads, tokens, head_dim), laid out in memory as `layout` says."""
    gen = torch.Generator("cpu").manual_seed(3)
    shape = (1, heads, tokens, head_dim) if layout == "bhsd" else (1, tokens, heads, head_dim)
    tensors = (torch.randn(*shape, generator=gen).to(device, dtype) for _ in range(3))
    return tuple(t if layout == "bhsd" else t.transpose(1, 2) for t in tensors)


def time_sdpa_backends(tokens: int, heads: int, head_dim: int, device: torch.device, dtype: torch.dtype,
                       iters: int = 5) -> list[dict]:
    """Each SDPA backend alone on Mochi's joint attention shape (batch 1, no mask), in each of
    `LAYOUTS`: seconds, TFLOP/s.

    A backend that cannot take the inputs says why instead of a time (SDPA raises rather than
    falling back when only one backend is allowed).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    flops = 4 * tokens * tokens * head_dim * heads  # QK^T and AV
    rows = []
    names = BACKENDS if device.type == "cuda" else ("MATH",)
    for layout in LAYOUTS:
        q, k, v = sdpa_inputs(tokens, heads, head_dim, layout, device, dtype)
        for name in names:
            row: dict = {"backend": name.split("_")[0].lower(), "layout": layout, "tokens": tokens}
            try:
                with sdpa_kernel([getattr(SDPBackend, name)]):
                    F.scaled_dot_product_attention(q, k, v)  # warm-up (cuDNN builds its plan here)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        F.scaled_dot_product_attention(q, k, v)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                row["seconds"] = (time.perf_counter() - t0) / iters
                row["tflops"] = flops / row["seconds"] / 1e12
            except RuntimeError as e:
                row["error"] = str(e).splitlines()[0][:200]
            rows.append(row)
        del q, k, v
    return rows
