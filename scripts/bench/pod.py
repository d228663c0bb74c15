#!/usr/bin/env python
"""The job pod end to end: wall time of `python -m jobimage` for one video on one GPU, one
video split over two GPUs, and two videos on two GPUs (or two on one GPU, `--scenarios`), with
the per-phase timings of each result. Needs a synced model folder (`t2v model sync`); `--smoke` uses the tiny
model on "cpu,cpu" to check the script.

  python scripts/bench/pod.py --model-dir /models --frames 163 --steps 64
  python scripts/bench/pod.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobcontract.records import Item, Manifest, read_result, write_manifest  # noqa: E402
from jobcontract.storage import LocalStore  # noqa: E402
from jobimage.models import spec_for  # noqa: E402


def scenario(name: str, store: LocalStore, args: argparse.Namespace, devices: str, n_items: int) -> dict:
    items = [Item(video_id=f"{name}-{i}", index=0, prompt="a cat walks on the beach at sunset, cinematic",
                  negative_prompt="", seed=i, num_frames=args.frames, height=args.height, width=args.width,
                  num_inference_steps=args.steps, guidance_scale=4.5, fps=spec_for(args.model).fps, model=args.model)
             for i in range(n_items)]
    key = write_manifest(store, Manifest(job_name=name, items=items))
    env = {**os.environ, "T2V_MANIFEST": key, "T2V_STORAGE_URL": f"file://{store.root}",
           "T2V_MODEL_DIR": str(args.model_dir), "T2V_DEVICES": devices, "JOB_COMPLETION_INDEX": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jobimage"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
    results = [read_result(store, it.video_id) for it in items]
    return {"scenario": name, "devices": devices, "items": n_items, "exit_code": proc.returncode,
            "wall_s": round(wall, 2), "results": [r and {"status": r.status, "gpu": r.gpu, "timings": r.timings}
                                                  for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model on cpu,cpu")
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("T2V_MODEL_DIR"))
    parser.add_argument("--model", default="mochi-1-preview")
    parser.add_argument("--devices", default="cuda:0,cuda:1")
    parser.add_argument("--frames", type=int, default=163)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=848)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--scenarios", default="one-gpu,split,two-items",
                        help="comma list of one-gpu, one-gpu-two-items (the second item pays no compile), split, "
                             "two-items")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/bench/results/pod.json")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="t2v-pod-bench-"))
    if args.smoke:
        from jobimage.models.tiny import ensure_tiny_model

        args.model, args.devices, args.frames, args.height, args.width, args.steps = "tiny", "cpu,cpu", 7, 64, 96, 4
        args.model_dir = args.model_dir or tmp / "models"
        ensure_tiny_model(Path(args.model_dir))
        args.out = tmp / "pod.json"
    if not args.model_dir:
        parser.error("--model-dir (or T2V_MODEL_DIR) is required")
    store = LocalStore(tmp / "store")
    first = args.devices.split(",")[0]
    shapes = {"one-gpu": (first, 1), "one-gpu-two-items": (first, 2), "split": (args.devices, 1),
              "two-items": (args.devices, 2)}
    wanted = args.scenarios.split(",")
    if unknown := [w for w in wanted if w not in shapes]:
        parser.error(f"--scenarios: unknown {', '.join(unknown)} (choose from {', '.join(shapes)})")
    runs = [scenario(w, store, args, *shapes[w]) for w in wanted]
    by_name = {r["scenario"]: r["results"][0] for r in runs}
    one, split = by_name.get("one-gpu") or by_name.get("one-gpu-two-items"), by_name.get("split")
    report = {"bench": "pod", "smoke": args.smoke, "frames": args.frames, "size": f"{args.width}x{args.height}",
              "steps": args.steps, "runs": runs}
    if one and split and one["status"] == split["status"] == "succeeded":
        report["split_denoise_ratio"] = round(split["timings"]["denoise"] / one["timings"]["denoise"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
