#!/usr/bin/env bash
# Make sure pcscd runs with the vpcd reader. Starts it when absent; never stops a pcscd
# that it did not start. Prints "started" or "running".
set -euo pipefail
if ! [ -f /usr/lib/pcsc/drivers/serial/libifdvpcd.so ]; then
  echo "vsmartcard-vpcd is not installed (run: make setup)" >&2
  exit 1
fi
if pgrep -x pcscd >/dev/null 2>&1 && [ -S /run/pcscd/pcscd.comm ]; then
  echo running
  exit 0
fi
mkdir -p /run/pcscd

pcscd
for _ in $(seq 1 50); do
  [ -S /run/pcscd/pcscd.comm ] && break
  sleep 0.1
done
# vpcd opens its TCP port once pcscd has loaded the driver.
for _ in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/35963) 2>/dev/null; then exec 3>&- 3<&- || true; break; fi
  sleep 0.1
done
echo started
