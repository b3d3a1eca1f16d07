"""Writes measured tables into ``docs/performance.md`` between marker comments, so the
benchmark run (``bench``) and the long fuzz run (``fuzz``) each replace only their own
section and keep the rest of the page (hand-written analysis) intact."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TEMPLATE = """# Performance

Measured, not guessed: every number below is written by a script from a real run
(`make bench`, `bench/fuzz_long.py`). The analysis sections are hand-written.

<!-- bench:start -->
<!-- bench:end -->

<!-- fuzz:start -->
<!-- fuzz:end -->
"""


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    target: str
    ok: bool | None  # None: a baseline or breakdown, no target

    @property
    def verdict(self) -> str:
        return "—" if self.ok is None else ("pass" if self.ok else "**FAIL**")


def table(rows: Sequence[Row]) -> str:
    lines = ["| measurement | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.value} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = path.read_text(encoding="utf-8") if path.exists() else TEMPLATE
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _old, tail = rest.split(end, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}", encoding="utf-8")


def write_report(path: Path, rows: Sequence[Row], info: Sequence[str], notes: Sequence[str]) -> None:
    body = ["## Benchmark results (`make bench`)", "", *(f"- {line}" for line in info), "",
            table(rows), ""]
    if notes:
        body += ["Run notes:", "", *(f"- {note}" for note in notes), ""]
    replace_section(path, "bench", "\n".join(body))
