"""H.264 MP4 and JPEG thumbnail from uint8 frames, with the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from jobcontract.video import VideoParams
from jobimage.errors import EncodeError

PRESET = "medium"


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary (built with libx264)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = VideoParams.model_fields["crf"].default) -> Path:
    """Write `frames` (F, H, W, 3 uint8) as H.264 yuv420p MP4 with +faststart, exactly F frames at `fps`,
    at x264 quality `crf`."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise EncodeError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, h, w, _ = frames.shape
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0",
        "-frames:v", str(n), "-c:v", "libx264", "-preset", PRESET, "-crf", str(crf),
        "-pix_fmt", "yuv420p", "-r", str(fps), "-movflags", "+faststart", "-an", str(path),
    ]
    try:
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, check=False)
    except OSError as e:
        raise EncodeError(f"could not start ffmpeg at {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise EncodeError(f"ffmpeg exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return path


def write_thumbnail(frames: np.ndarray, path: Path, *, max_width: int = 512) -> Path:
    """JPEG of the middle frame, scaled down to at most `max_width` wide."""
    from PIL import Image

    image = Image.fromarray(frames[len(frames) // 2])
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    image.save(path, format="JPEG", quality=88)
    return path
