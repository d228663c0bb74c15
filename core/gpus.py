"""The GPUs this machine shows, read without importing torch (the service processes never load it)."""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_gpus() -> list[str]:
    """GPU indexes this machine shows (`nvidia-smi -L`), without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return []
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
