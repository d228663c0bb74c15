"""scripts/bench/mochi_gpu.py runs its whole logic on the CPU with tiny configs (--smoke).

The GPU numbers themselves come from a run on a GPU (docs/performance.md); these tests keep the
script able to produce them: the plan's order, the time budget, the JSON and the docs table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/bench"))
try:
    import gpu_probes
    import mochi_gpu
finally:
    sys.path.remove(str(ROOT / "scripts/bench"))


def _run(tmp_path: Path, *extra: str) -> tuple[dict, str]:
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\nintro\n\n<!-- mochi_gpu:begin -->\nold\n<!-- mochi_gpu:end -->\n\nafter\n")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench/mochi_gpu.py"), "--smoke", "--frames", "7",
                           "--warmup", "0", "--out", str(out), "--docs", str(docs), *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), docs.read_text()


@pytest.mark.slow
def test_smoke_run_writes_json_and_table(tmp_path):
    report, text = _run(tmp_path, "--devices", "cpu,cpu")
    assert report["smoke"] and [(r["attention"], r["compiled"]) for r in report["rows"]] == [
        ("ours", False), ("stock", False)]
    ours = report["rows"][0]
    assert ours["max_abs_diff_vs_stock"] < 1e-4 and ours["rel_err_vs_stock"] < 1e-5
    assert ours["step_1gpu_s"] > 0 and ours["forward_b1_s"] > 0 and ours["step_split_s"] > 0
    assert ours["attention_kernel"] and 0 < ours["attention_share"] < 1 and ours["top_kernels"]
    assert [(d["tiled"], d["decode_s"] > 0) for d in report["decode"]] == [(True, True), (False, True)]
    assert [(s["layout"], s["seconds"] > 0) for s in report["sdpa"]] == [("bhsd", True), ("bshd", True)]
    assert not report["skipped"]
    assert "old" not in text and "after" in text and "SMOKE RUN" in text and "| 7 | ours | no |" in text


@pytest.mark.slow
def test_budget_skips_what_would_not_finish(tmp_path):
    report, text = _run(tmp_path, "--devices", "cpu", "--budget-s", "0.001")
    assert report["rows"] == [] and report["decode"] == []
    assert [s.split(" (")[0] for s in report["skipped"]] == [
        "sdpa 7", "step 7 ours", "step 7 stock", "decode 7 tiled", "decode 7 not tiled"]
    assert all("left)" in s for s in report["skipped"])
    assert "Not measured in this run (time budget)" in text


def test_plan_puts_what_the_pod_runs_first():
    plan = mochi_gpu.make_plan([31, 163, 85], ["stock", "ours"], [False, True], decode=True)
    assert plan == [
        ("sdpa", 163, None, None),
        ("step", 163, "ours", False), ("step", 163, "stock", False),
        ("step", 85, "ours", False), ("step", 85, "stock", False),
        ("step", 31, "ours", False), ("step", 31, "stock", False),
        ("decode", 163, True, None),
        ("step", 163, "ours", True),
        ("decode", 163, False, None),
        ("step", 163, "stock", True),
    ]


@pytest.mark.parametrize("name, kind", [
    ("cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x128_4x1x1_kernel0_0", "cudnn"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>, false>", "flash"),
    ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel)", "efficient"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<8, c10::BFloat16>", "math"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "flash"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64_cudnn", None),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16, float>", None),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", None),
], ids=["cudnn", "flash", "efficient", "math", "cpu-flash", "cudnn-conv", "cudnn-layout", "gemm", "elementwise"])
def test_attention_kernel_names(name, kind):
    assert gpu_probes.attention_kind(name) == kind


def test_sdpa_inputs_are_laid_out_as_named():
    """"bshd" is what Mochi's processors hand SDPA: a (B, S, H, D) tensor seen as (B, H, S, D)."""
    q, _, _ = gpu_probes.sdpa_inputs(10, 3, 4, "bhsd", torch.device("cpu"), torch.float32)
    assert q.shape == (1, 3, 10, 4) and q.is_contiguous()
    q, _, _ = gpu_probes.sdpa_inputs(10, 3, 4, "bshd", torch.device("cpu"), torch.float32)
    assert q.shape == (1, 3, 10, 4) and q.stride() == (120, 4, 12, 1) and q.transpose(1, 2).is_contiguous()


def test_flop_count_matches_the_issue_reference():
    cfg = dict(patch_size=2, num_attention_heads=24, attention_head_dim=128, num_layers=48, pooled_projection_dim=1536)
    per_forward = mochi_gpu.forward_flops(cfg, 163, 480, 848, 64)
    assert per_forward == pytest.approx(1.66e15, rel=0.01)
    assert 2 * 64 * per_forward / 700e12 == pytest.approx(304, rel=0.01)


@pytest.mark.slow
def test_gpu_lease_runs_the_benchmarks_into_out(tmp_path):
    """The one command a lent GPU machine runs (scripts/bench/gpu_lease.py), on the CPU: without
    carried wheels it uses this environment; with --pod it also writes a random model and runs the
    job pod on it. Everything lands in $OUT, docs/performance.md's copy rewritten."""
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench/gpu_lease.py"), "run", "--smoke", "--pod",
                           "--model-dir", str(tmp_path / "models"),
                           "--wheels", str(tmp_path / "no-wheels"), "--", "--frames", "7", "--warmup", "0",
                           "--no-decode", "--attention", "ours"], env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads((tmp_path / "mochi_gpu.json").read_text())
    assert report["smoke"] and [r["attention"] for r in report["rows"]] == ["ours"]
    docs = (tmp_path / "performance.md").read_text()
    assert "SMOKE RUN" in docs and "## API and database" in docs  # the table replaced, the rest kept
    pod = json.loads((tmp_path / "pod.json").read_text())
    assert [r["status"] for r in pod["runs"][0]["results"]] == ["succeeded", "succeeded"]
    assert {p.name for p in tmp_path.glob("*.log")} == {"mochi_gpu.log", "random_mochi.log", "pod.log"}


def test_gpu_lease_carries_the_projects_pins():
    """The wheels carried to a GPU machine are this project's versions (its pins, from pyproject.toml)."""
    sys.path.insert(0, str(ROOT / "scripts/bench"))
    try:
        import gpu_lease
    finally:
        sys.path.remove(str(ROOT / "scripts/bench"))
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {p.split("==")[0].split("[")[0].lower().replace("_", "-"): p.split("==")[1]
              for p in pins["dependencies"] + pins["optional-dependencies"]["gen"]}
    carried = dict(p.split("==") for p in gpu_lease.wheel_pins())
    assert carried["diffusers"] == pinned["diffusers"] and carried["pydantic"] == pinned["pydantic"]
    assert carried["imageio-ffmpeg"] == "0.6.0"  # 0.8.1's wheel alone is over the carry limit
