"""Prompt tokens counted at submission with the model's own tokenizer, so the API refuses what the pod would.

The pod counts with transformers' `AutoTokenizer` on `<model>/tokenizer/`; that folder's
`tokenizer.json` (which `t2v model sync` derives where the source has only sentencepiece files)
is the same tokenizer for the `tokenizers` library, which loads it in milliseconds and needs no
torch. A web app with the model folder (the embedded default) reads it there; one without weights
(cluster mode) reads the copy the model-cache DaemonSet published to object storage
(`t2v model publish`, key `tokenizer_key(model)`). Where neither exists the count is None and the
pod's own check stays the last word.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobcontract.errors import ObjectNotFound, StorageError
from jobcontract.records import tokenizer_key
from jobcontract.storage import ObjectStore
from jobimage.model_folder import READY_NAME

logger = logging.getLogger("t2v.tokens")

# How long what storage said (a published tokenizer, or none yet) is trusted before it is asked again:
# a model re-synced with another tokenizer is seen within this, and an idle web app makes one small
# GET per model per period. `refresh` runs in a worker thread, never on a request's event loop.
PUBLISHED_REFRESH_S = 300.0
# How long a submission waits for a due refresh (an in-cluster GET takes milliseconds). A store that is
# slow or unreachable (20 s of connect timeouts and retries) costs a request no more; the read goes on
# in its thread and later requests count with what it finds.
REFRESH_WAIT_S = 1.0


class TokenCounter:
    """(model, text) -> tokens including `</s>`, or None where that model's tokenizer is not reachable."""

    def __init__(self, models_path: Path, *, store: ObjectStore | None = None, models: Iterable[str] = ()) -> None:
        self.models_path = Path(models_path)
        self.store = store
        self.models = tuple(models)  # whose published tokenizers `refresh` reads
        self._loaded: dict[str, tuple[float, Any]] = {}
        self._published: dict[str, tuple[str, Any]] = {}  # model -> (sha256 of the JSON, tokenizer)
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def __call__(self, model: str, text: str) -> int | None:
        tokenizer = self._local(model)
        if tokenizer is None:
            tokenizer = self._published.get(model, (None, None))[1]
        if tokenizer is None:
            return None
        return len(tokenizer.encode(text, add_special_tokens=True).ids)

    def refresh_due(self) -> bool:
        """Whether storage should be asked again for the published tokenizers."""
        return (self.store is not None and bool(self.models)
                and (self._refreshed_at is None or time.monotonic() - self._refreshed_at > PUBLISHED_REFRESH_S))

    def refresh(self) -> None:
        """Read every model's published tokenizer.json from storage (blocking I/O: a worker thread's job).
        A caller that finds another refresh running returns at once and counts with what is loaded."""
        if self.store is None or not self._refreshing.acquire(blocking=False):
            return
        try:
            for model in self.models:
                self._read_published(model)
            self._refreshed_at = time.monotonic()
        finally:
            self._refreshing.release()

    def _read_published(self, model: str) -> None:
        assert self.store is not None
        try:
            data = self.store.get_bytes(tokenizer_key(model))
        except ObjectNotFound:
            self._published.pop(model, None)
            return
        except StorageError as e:  # unreachable for now: keep what was read before, ask again next time
            logger.warning("could not read a published tokenizer", extra={"model": model, "error": str(e)})
            return
        digest = hashlib.sha256(data).hexdigest()
        if self._published.get(model, ("",))[0] == digest:
            return
        tokenizer = _parse(data, model)
        if tokenizer is not None:
            self._published[model] = (digest, tokenizer)

    def _local(self, model: str) -> Any:
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
            data = path.read_bytes()
        except OSError:
            return None
        tokenizer = _parse(data, model)
        if tokenizer is not None:
            with self._lock:
                self._loaded[model] = (stamp, tokenizer)
        return tokenizer


def _parse(data: bytes, model: str) -> Any:
    """A `tokenizers.Tokenizer` from tokenizer.json bytes; None where the library is missing or the file is bad."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    try:
        return Tokenizer.from_str(data.decode())
    except Exception as e:  # the library raises plain Exceptions for a malformed file
        logger.warning("tokenizer.json does not load; prompts go uncounted", extra={"model": model, "error": str(e)})
        return None
