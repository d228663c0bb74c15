#!/usr/bin/env python
"""One lent GPU machine, used well: the Mochi benchmarks where torch is installed but diffusers is
not, nothing can be downloaded, and a command may run 10 minutes (docs/performance.md, "On a lent
GPU machine").

Here, on a machine with PyPI, once: the wheels the GPU machine's Python (CPython 3.12) lacks, at
this environment's versions, into .whl/ (git-ignored; carry it with the working tree):

  python scripts/bench/gpu_lease.py wheels

There, in the repository root, one command: installs .whl/ (if carried) under /tmp, runs
mochi_gpu.py under a time budget, then with --pod the job pod end to end on random full-size
weights, and leaves the JSON, the rewritten performance.md and the logs in $OUT (else
scripts/bench/results/lease/). Arguments after `--` go to mochi_gpu.py:

  python3 scripts/bench/gpu_lease.py run --budget-s 420 -- --rows sdpa:163,step:163:ours:compiled
  python scripts/bench/gpu_lease.py run --smoke          # CPU, tiny configs: checks the script
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts/bench"
WHEELS = ROOT / ".whl"
SITE = Path("/tmp/t2v-lease-site")
GPU_PYTHON = "3.12"  # the lent machines' python3 (device README)
CARRY_LIMIT_MIB = 64  # the working tree and the carried paths together, per call
TREE_MIB = 8  # left for the working tree itself (about 1.6 MiB of tracked files now)
# What the job image and the benchmarks import that the GPU machines' image does not have; each at
# this environment's version, except imageio-ffmpeg: 0.8.1's wheel is 68 MB, over the carry limit on
# its own, and 0.6.0's (29 MB) ships an ffmpeg with the same libx264 encoder and the same API.
CARRIED = ("diffusers", "importlib_metadata", "pydantic", "pydantic_core", "annotated_types", "typing_inspection",
           "typing_extensions")  # pydantic_core needs a recent one (Sentinel)
PINNED = {"imageio-ffmpeg": "0.6.0"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64",
             "manylinux1_x86_64")


def wheel_pins() -> list[str]:
    """name==version for every wheel the GPU machine needs."""
    return [f"{name}=={version(name)}" for name in CARRIED] + [f"{n}=={v}" for n, v in PINNED.items()]


def cmd_wheels(args: argparse.Namespace) -> int:
    WHEELS.mkdir(exist_ok=True)
    for old in WHEELS.glob("*.whl"):  # one version of each: two stop the install there
        old.unlink()
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", GPU_PYTHON, "--implementation", "cp", *platforms, "-d", str(WHEELS),
                    *wheel_pins()], check=True)
    for whl in sorted(WHEELS.glob("*.whl")):
        zipfile.ZipFile(whl).testzip()
    total = sum(f.stat().st_size for f in WHEELS.glob("*.whl")) / 2**20
    fits = total <= CARRY_LIMIT_MIB - TREE_MIB
    print(f"{WHEELS}: {len(list(WHEELS.glob('*.whl')))} wheels, {total:.1f} MiB (limit {CARRY_LIMIT_MIB} MiB with "
          f"the working tree); {'carry .whl' if fits else 'too large to carry'}")
    return 0 if fits else 1


def _install(folder: Path) -> dict[str, str]:
    """Install the carried wheels under SITE; the environment the benchmarks run in."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wheels = sorted(folder.glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, wheels)], check=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    return env


def _step(name: str, argv: list[str], env: dict[str, str], out: Path, timeout: float) -> int:
    """Run one benchmark with its output both on the console and in out/<name>.log, killed after
    `timeout` seconds (the benchmarks write results as they go: what is done stays)."""
    print(f"== {name}: {' '.join(argv)}", flush=True)
    if timeout <= 0:
        print(f"== {name}: skipped, no time left", flush=True)
        return 124
    with (out / f"{name}.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
                log.flush()
            code = proc.wait()
        finally:
            timer.cancel()
        if code == -9:
            log.write(f"killed after {timeout:.0f} s\n")
        return code


def cmd_run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    out = Path(os.environ.get("OUT") or ROOT / "scripts/bench/results/lease")
    out.mkdir(parents=True, exist_ok=True)
    env = _install(args.wheels)
    docs = out / "performance.md"
    shutil.copyfile(ROOT / "docs/performance.md", docs)
    bench = [str(BENCH / "mochi_gpu.py"), "--budget-s", str(args.budget_s), "--out", str(out / "mochi_gpu.json"),
             "--docs", str(docs), *(["--smoke"] if args.smoke else []), *args.bench_args]
    codes = [_step("mochi_gpu", bench, env, out, timeout=args.budget_s + 60)]
    if args.pod:
        left = args.deadline_s - (time.monotonic() - t0)
        models = Path(args.model_dir)
        codes.append(_step("random_mochi", [str(BENCH / "random_mochi.py"), "--out", str(models),
                                            *(["--small"] if args.smoke else [])], env, out, timeout=left))
        left = args.deadline_s - (time.monotonic() - t0)
        pod = [str(BENCH / "pod.py"), "--model-dir", str(models), "--out", str(out / "pod.json")]
        pod += (["--devices", "cpu", "--frames", "7", "--height", "64", "--width", "96", "--steps", "2"] if args.smoke
                else ["--devices", "cuda:0", "--frames", "163", "--steps", "4"])
        codes.append(_step("pod", [*pod, "--scenarios", "one-gpu-two-items"], env, out, timeout=left))
    print(f"== done in {time.monotonic() - t0:.0f} s, exit codes {codes}; results in {out}", flush=True)
    return max(codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("wheels", help="download the wheels the GPU machine lacks into .whl/")
    run = sub.add_parser("run", help="on the GPU machine: install .whl/, run the benchmarks, results in $OUT")
    run.add_argument("--budget-s", type=float, default=420, help="mochi_gpu.py's time budget")
    run.add_argument("--pod", action="store_true", help="then the job pod end to end (random full-size weights)")
    run.add_argument("--deadline-s", type=float, default=570, help="when everything must have ended (a command "
                     "may run 600 s there)")
    run.add_argument("--model-dir", default="/tmp/t2v-models", help="where random_mochi.py writes the model")
    run.add_argument("--wheels", type=Path, default=WHEELS, help="the carried wheels (none there: this environment)")
    run.add_argument("--smoke", action="store_true", help="tiny configs on the CPU")
    run.add_argument("bench_args", nargs="*", help="after --: passed to mochi_gpu.py")
    args = parser.parse_args(argv)
    return cmd_wheels(args) if args.cmd == "wheels" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
