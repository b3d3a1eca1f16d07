#!/usr/bin/env bash
# Linux stand-in for the Windows MSI build: wixl + msitools (Debian packages wixl, msitools).
# Usage: packaging/windows/build-msi-linux.sh [--payload DIR] [--exe-name NAME] [-o OUT.msi]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../../.venv/bin/python}"
[ -x "$py" ] || py=python3
exec "$py" "$here/build_msi.py" "$@"
