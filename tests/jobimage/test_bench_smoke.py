"""scripts/bench/mochi_gpu.py runs its whole logic on the CPU with tiny configs (--smoke).

The GPU numbers themselves come from a run on a GPU (docs/performance.md); these tests keep the
script able to produce them: the plan's order, the time budget, the JSON and the docs table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert report["sdpa"] and report["sdpa"][0]["seconds"] > 0 and not report["skipped"]
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


def test_flop_count_matches_the_issue_reference():
    cfg = dict(patch_size=2, num_attention_heads=24, attention_head_dim=128, num_layers=48, pooled_projection_dim=1536)
    per_forward = mochi_gpu.forward_flops(cfg, 163, 480, 848, 64)
    assert per_forward == pytest.approx(1.66e15, rel=0.01)
    assert 2 * 64 * per_forward / 700e12 == pytest.approx(304, rel=0.01)
