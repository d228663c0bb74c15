"""Background threads for loops that run beside the API in one process."""

from __future__ import annotations

import threading
from collections.abc import Callable


def start_thread(fn: Callable[[], None], name: str) -> threading.Thread:
    """Start `fn` on a daemon thread."""
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    return t
