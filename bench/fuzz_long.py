"""The long fuzz run: every ``tests/*/test_fuzz_*.py`` property with the ``long`` Hypothesis
profile (random seeds, ``--examples`` cases per property, at least 100 000 in total), the
socket fuzz against the real agent process included. Records the result in
``docs/performance.md`` (the ``fuzz`` section).

    .venv/bin/python bench/fuzz_long.py [--examples 9000] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fuzz_profiles import EXAMPLES_ENV, PROFILE_ENV  # noqa: E402
from bench.report import replace_section  # noqa: E402

_TEST = re.compile(r"^(tests/\S+::\S+):\s*$", re.M)
_PASSING = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")


def run(examples: int) -> tuple[int, str, dict[str, tuple[int, int, int]]]:
    report = Path(tempfile.mkdtemp(prefix="eid-fuzz-")) / "socket-messages"
    env = {**os.environ, PROFILE_ENV: "long", EXAMPLES_ENV: str(examples),
           "EID_FUZZ_SOCKET_REPORT": str(report)}
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*/test_fuzz_*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", "--timeout", "3600"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    output = result.stdout + result.stderr
    counts: dict[str, tuple[int, int, int]] = {}
    names = _TEST.findall(output)
    parts = _TEST.split(output)[2::2]
    for name, part in zip(names, parts, strict=False):
        found = _PASSING.findall(part)
        if found:
            counts[name] = tuple(sum(int(f[i]) for f in found) for i in range(3))  # type: ignore[assignment]
    if report.exists():  # a nested @given: Hypothesis prints no statistics for it
        counts["tests/integration/test_fuzz_protocol.py::test_real_socket_messages (real agent)"] = (
            int(report.read_text()), 0, 0)
        shutil.rmtree(report.parent, ignore_errors=True)
    return result.returncode, output, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the long fuzz run (>= 100k cases)")
    parser.add_argument("--examples", type=int, default=9000, help="cases per property")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    code, output, counts = run(args.examples)
    elapsed = time.monotonic() - started
    summary = output.strip().splitlines()[-1] if output.strip() else "no output"
    total = sum(c[0] + c[1] for c in counts.values())
    failing = sum(c[1] for c in counts.values())
    lines = [
        "## Long fuzz run (`bench/fuzz_long.py`)", "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{elapsed:.0f} s; {args.examples} cases asked per property (Hypothesis stops early "
        "when a strategy's space is exhausted)",
        f"- result: **{total} cases**, {failing} failing; pytest: `{summary}`", "",
        "| property | passing | failing | invalid (filtered) |", "|---|---|---|---|",
        *(f"| `{name}` | {c[0]} | {c[1]} | {c[2]} |" for name, c in sorted(counts.items())),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if code != 0:
        print(output[-8000:])
    if not args.no_write:
        replace_section(args.output, "fuzz", text)
    return code


if __name__ == "__main__":
    sys.exit(main())
