"""CSV of prompts -> validated specs, or every bad row with its reason."""

from __future__ import annotations

import csv
import io
from typing import Any

from core.errors import APIError, InvalidCSV, InvalidParam
from core.params import MAX_PROMPT_CHARS, TEXT_FIELDS, TokenCounter, VideoSpec, parse_video

CSV_COLUMNS = TEXT_FIELDS

# The schema of a CSV body. JSON Schema cannot say "a CSV whose header has a prompt column and whose
# rows pass parse_video", so the pattern gives the simplest such CSVs, every one of which is accepted
# (up to the row and byte limits, which are 400 and 413): the header `prompt`, then rows of plain
# text of at most MAX_PROMPT_CHARS characters (no quotes or commas, some non-space).
_HALF = f"{{0,{MAX_PROMPT_CHARS // 2 - 1}}}"
# The one character that must not be space: what Python's str.strip() removes is spelled out (the
# fuzzer's `\s` is ASCII only, and a prompt of one U+001C is empty to the server).
_SPACE = "\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_ROW = f'[^\\r\\n",\\x00]{_HALF}[^\\s",{_SPACE}][^\\r\\n",\\x00]{_HALF}'
CSV_SCHEMA = {"type": "string", "contentMediaType": "text/csv",
              "pattern": f"^prompt\\r?\\n{_ROW}(\\r?\\n{_ROW})*(\\r?\\n)?$",
              "description": "UTF-8 CSV with a header row: 'prompt' and any of " + ", ".join(TEXT_FIELDS[1:])
                             + " (RFC 4180 quoting), within the server's row and upload limits; the pattern "
                             "describes the simplest accepted form."}


def read_rows(data: bytes) -> list[dict[str, str]]:
    """Decode a CSV upload (UTF-8, optional BOM) into row dicts; header row required."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidParam(f"the CSV is not UTF-8 text (byte {e.start} is {data[e.start:e.start + 1]!r})",
                           param="file") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise InvalidParam("the CSV is empty: it needs a header row with at least a 'prompt' column", param="file")
    if "prompt" not in header:
        raise InvalidParam(f"the CSV header has no 'prompt' column (got {', '.join(map(repr, header))})", param="file")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise InvalidParam(f"unknown CSV column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(CSV_COLUMNS)}",
                           param="file")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:  # more cells than header columns
            rows.append({"__extra__": "x", **{k: v for k, v in row.items() if k is not None}})
        else:
            rows.append(row)
    return rows


def validate_rows(rows: list[dict[str, Any]], *, default_model: str, models: list[str],
                  max_rows: int, strict: bool = False, tokens: TokenCounter | None = None) -> list[VideoSpec]:
    """Validate every row; raise InvalidCSV listing all bad rows (1 = first data row)."""
    if not rows:
        raise InvalidParam("the batch has no rows", param="file")
    if len(rows) > max_rows:
        raise InvalidParam(f"the batch has {len(rows)} rows; the limit is {max_rows}", param="file")
    specs, bad = [], []
    for n, row in enumerate(rows, start=1):
        if row.get("__extra__"):
            bad.append({"row": n, "param": None, "message": "row has more cells than the header has columns"})
            continue
        clean = row if strict else {k: v for k, v in row.items() if v not in (None, "")}  # CSV: empty cell = default
        try:
            spec, _ = parse_video(clean, default_model=default_model, models=models, strict=strict, tokens=tokens)
            specs.append(spec)
        except APIError as e:
            bad.append({"row": n, "param": e.param, "message": e.message})
    if bad:
        raise InvalidCSV(f"{len(bad)} of {len(rows)} rows are invalid; nothing was queued", rows=bad)
    return specs
