"""Prompt tokens counted at submission with the model's own tokenizer, so the API refuses what the pod would.

The pod counts with transformers' `AutoTokenizer` on `<model>/tokenizer/`; that folder's
`tokenizer.json` is the same tokenizer for the `tokenizers` library, which loads it in milliseconds
and needs no torch. Where it is not reachable (no such file: a cluster-mode web app has no weights,
a folder synced with only `spiece.model`; or `tokenizers` not installed) the count is None and the
pod's own check stays the last word.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.settings import Settings
from jobimage.model_folder import READY_NAME


class TokenCounter:
    """(model, text) -> tokens including `</s>`, or None where that model's tokenizer is not here."""

    def __init__(self, models_path: Path) -> None:
        self.models_path = Path(models_path)
        self._loaded: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, model: str, text: str) -> int | None:
        tokenizer = self._tokenizer(model)
        if tokenizer is None:
            return None
        return len(tokenizer.encode(text, add_special_tokens=True).ids)

    def _tokenizer(self, model: str) -> Any:
        folder = self.models_path / model
        path = folder / "tokenizer" / "tokenizer.json"
        try:
            if not (folder / READY_NAME).is_file():  # a folder still syncing is not read
                return None
            stamp = path.stat().st_mtime
        except OSError:
            return None
        with self._lock:
            hit = self._loaded.get(model)
            if hit and hit[0] == stamp:  # a re-synced or rebuilt model is read again
                return hit[1]
        try:
            from tokenizers import Tokenizer
        except ImportError:
            return None
        tokenizer = Tokenizer.from_file(str(path))
        with self._lock:
            self._loaded[model] = (stamp, tokenizer)
        return tokenizer


def counter_for(settings: Settings) -> TokenCounter | None:
    """The counter for the settings' model folder, shared by every request; None when counting is off."""
    return _shared(settings.models_path) if settings.check_prompt_tokens else None


@lru_cache(maxsize=8)
def _shared(models_path: Path) -> TokenCounter:
    return TokenCounter(models_path)
