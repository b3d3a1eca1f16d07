#!/usr/bin/env bash
# One-command setup on Debian 12 as root, idempotent:
#   system packages, a virtual environment in .venv with the project (editable) and its
#   dev tools, and a running pcscd with the vpcd virtual reader.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # PC/SC stack and the virtual reader driver
  pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools
  # building pyscard from source
  swig build-essential pkg-config
  # independent software to test against
  opensc
  # Python
  python3 python3-venv python3-dev
  # tray (pystray's gtk/appindicator backend needs PyGObject built in the venv)
  libgirepository1.0-dev libcairo2-dev gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1
  # desktop tests: virtual X server, input, tray host, screenshots
  xvfb xdotool trayer x11-utils imagemagick
  # Qt's xcb platform plugin needs these at run time
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0
  libxcb-image0 libxcb-randr0 libxcb-xkb1 libxcb-sync1 libxcb-xfixes0 libx11-xcb1
  libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3 fonts-dejavu-core
  # a session bus for the tray under Xvfb (dbus-run-session)
  dbus-daemon
  # browser tests (Debian's browsers, never a downloaded one): Chromium (Playwright), Firefox ESR
  # (its own Marionette), WebKitGTK (WebKitWebDriver + MiniBrowser)
  chromium firefox-esr webkit2gtk-driver
  # MSI build and inspection; a real silent install/uninstall under Wine's msiexec, with a
  # stand-in eid-agent.exe built by mingw-w64 (tests/e2e/test_msi_wine.py)
  wixl msitools wine gcc-mingw-w64-x86-64-win32
  # wss:// local CA: NSS certutil/vfychain (browser trust stores), the system bundle tools
  libnss3-tools ca-certificates
  # validating the generated autostart entry
  desktop-file-utils systemd
  # private pcscd for fault tests: unshare/nsenter; ps; peer-isolation tests: runuser, prlimit
  # (util-linux), ip/ss in a private network namespace (iproute2), dbus-monitor (dbus-bin)
  util-linux procps iproute2 dbus-bin git make
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if ! [ -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.eid-agent-installed
if ! [ -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ] \
   || [ validator/pyproject.toml -nt "$stamp" ] || [ emulator/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The three distributions, editable: the validator (portals), the agent, the emulator (tests, demo).
  .venv/bin/python -m pip install -q -e ./validator -e ".[dev,dialogs]" -e ./emulator
  # pystray's menus on Linux go through GTK; PyGObject >= 3.51 needs a newer girepository.
  .venv/bin/python -m pip install -q "PyGObject<3.51"
  touch "$stamp"
fi

bash scripts/ensure-pcscd.sh >/dev/null
echo "setup: ready (.venv, pcscd with vpcd readers)"
