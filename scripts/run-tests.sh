#!/usr/bin/env bash
# Every test: ruff, mypy, then pytest (unit tests, the import-boundary checks, and the
# integration tests on a real pcscd + vpcd, OpenSC, Chromium and Xvfb). Artifacts land in artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p artifacts
status=0
echo "== ruff"
.venv/bin/ruff check agent tray tests bench examples emulator validator || status=1
echo "== mypy"
.venv/bin/mypy agent tray emulator validator || status=1
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
exit $status
