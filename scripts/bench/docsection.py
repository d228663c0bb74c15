"""Rewrite one benchmark's marked section of docs/performance.md (appended under `heading` the first time)."""

from __future__ import annotations

from pathlib import Path

PERFORMANCE_DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"


def write_section(name: str, heading: str, command: str, tables: str, doc: Path = PERFORMANCE_DOC) -> None:
    """Put `Reproduce: command` and `tables` between the `<!-- bench-NAME:begin/end -->` markers."""
    text = doc.read_text() if doc.exists() else "# Performance\n"
    begin, end = f"<!-- bench-{name}:begin -->", f"<!-- bench-{name}:end -->"
    body = f"{begin}\nReproduce: `{command}`\n\n{tables}\n{end}"
    if begin in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text += f"\n## {heading}\n\n{body}\n"
    doc.write_text(text)
