"""What a loadable Mochi folder looks like, checked before anything heavy is imported.

A folder is usable only once its READY marker exists: `t2v model sync` and
`ensure_tiny_model` write it last, so a half-copied folder is never loaded.
"""

from __future__ import annotations

from pathlib import Path

from jobimage.errors import ModelFolderError

READY_NAME = "READY"  # written last: its presence means the folder is complete
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_CONFIGS = {"transformer": "config.json", "vae": "config.json", "text_encoder": "config.json",
            "scheduler": "scheduler_config.json"}
_WEIGHTS = {"transformer", "vae", "text_encoder"}


def model_path(model_dir: Path, name: str) -> Path:
    """`<model_dir>/<name>`, refusing names that would leave the folder."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ModelFolderError(f"model name {name!r} is not a plain folder name")
    return Path(model_dir) / name


def check_model_folder(folder: Path) -> Path:
    """Raise `ModelFolderError` naming the path and what is missing; return the folder."""
    folder = Path(folder)
    hint = f"run `t2v model sync {folder.name} --dir {folder.parent}`"
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist; {hint}")
    missing = []
    if not (folder / "model_index.json").is_file():
        missing.append("model_index.json")
    for comp in COMPONENTS:
        sub = folder / comp
        if not sub.is_dir():
            missing.append(f"{comp}/")
            continue
        if comp in _CONFIGS and not (sub / _CONFIGS[comp]).is_file():
            missing.append(f"{comp}/{_CONFIGS[comp]}")
        if comp in _WEIGHTS and not any(sub.glob("*.safetensors")) and not any(sub.glob("*.bin")):
            missing.append(f"{comp}/*.safetensors")
        if comp == "tokenizer" and not any((sub / n).is_file() for n in ("tokenizer.json", "spiece.model")):
            missing.append("tokenizer/tokenizer.json or spiece.model")
    if not (folder / READY_NAME).is_file():
        missing.append(f"{READY_NAME} (written last by a finished sync)")
    if missing:
        raise ModelFolderError(f"model folder {folder} is incomplete, missing: {', '.join(missing)}; {hint}")
    return folder
