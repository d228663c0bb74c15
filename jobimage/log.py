"""Structured logs: one JSON object per line on stderr, message plus key/value context."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "jobimage"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (tests and runners swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """Renders `logger.info("msg", extra={"kv": {...}})` as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "kv", {}) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """The package logger (children share the stderr handler set up by `setup`)."""
    return logging.getLogger(name)


def setup(level: int = logging.INFO) -> None:
    """Send jobimage logs to stderr as JSON lines; idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_t2v", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._t2v = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def kv(**context: Any) -> dict[str, Any]:
    """`extra=` argument carrying key/value context for one log line."""
    return {"kv": context}
