#!/usr/bin/env bash
# Every test: lint, types, then pytest (the boundary checks are tests too) (unit, real pcscd + vpcd, OpenSC,
# Chromium, Xvfb). Artifacts (screenshots, logs) land in artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p artifacts
status=0
echo "== ruff"
.venv/bin/ruff check agent tray tests bench examples || status=1
echo "== mypy"
.venv/bin/mypy agent tray || status=1
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
exit $status
