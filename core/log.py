"""One logging setup for `t2v serve` and `t2v controller`: a message plus its key/value context.

Code logs `log.info("job started", extra={"job": name, ...})`; the keys are kept, as `key=value`
after the message (the default, for people) or in one JSON object per line (`T2V_LOG_FORMAT=json`,
for log collectors). The job image writes JSON lines of the same shape (jobimage/log.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("text", "json")
# Attributes every LogRecord has: anything else on a record came in through `extra=`.
# uvicorn's `color_message` is its message again with terminal colour codes: not context.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName",
                                                                              "color_message"}


def context(record: logging.LogRecord) -> dict[str, Any]:
    """The record's key/value context: its `extra=` keys (and a jobimage-style `kv` dict)."""
    out = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "kv" and not k.startswith("_")}
    if isinstance(getattr(record, "kv", None), dict):
        out.update(record.kv)
    return out


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-12-04T18:00:00.123Z INFO t2v.runner job started job=local-abc videos=["video_x"]`."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        for key, value in context(record).items():
            text = value if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value) \
                else json.dumps(value, default=str)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the context keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(), "logger": record.name,
                               "msg": record.getMessage(), **context(record)}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(*, level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger's records to stderr in `fmt`; calling it again replaces the earlier setup."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_t2v", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._t2v = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
