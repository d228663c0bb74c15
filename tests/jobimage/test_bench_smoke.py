"""scripts/bench/mochi_gpu.py runs its whole logic on the CPU with tiny configs (--smoke)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_smoke_run_writes_json_and_table(tmp_path):
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\nintro\n\n<!-- mochi_gpu:begin -->\nold\n<!-- mochi_gpu:end -->\n\nafter\n")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench/mochi_gpu.py"), "--smoke", "--devices", "cpu,cpu",
                           "--frames", "7", "--iters", "1", "--warmup", "0", "--out", str(out), "--docs", str(docs)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and [(r["attention"], r["compiled"]) for r in report["rows"]] == [
        ("stock", False), ("ours", False)]
    ours = report["rows"][1]
    assert ours["max_abs_diff_vs_stock"] < 1e-4
    assert ours["step_1gpu_s"] > 0 and ours["forward_b1_s"] > 0 and ours["step_split_s"] > 0
    assert ours["decode_s"] > 0 and ours["video_1gpu_s"] > 0
    text = docs.read_text()
    assert "old" not in text and "after" in text and "SMOKE RUN" in text and "| 7 | ours | no |" in text


def test_flop_count_matches_the_issue_reference():
    sys.path.insert(0, str(ROOT / "scripts/bench"))
    try:
        import mochi_gpu
    finally:
        sys.path.remove(str(ROOT / "scripts/bench"))
    cfg = dict(patch_size=2, num_attention_heads=24, attention_head_dim=128, num_layers=48, pooled_projection_dim=1536)
    per_forward = mochi_gpu.forward_flops(cfg, 163, 480, 848, 64)
    assert per_forward == pytest.approx(1.66e15, rel=0.01)
    assert 2 * 64 * per_forward / 700e12 == pytest.approx(304, rel=0.01)
