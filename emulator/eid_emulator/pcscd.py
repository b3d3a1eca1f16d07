"""A private pcscd with vpcd readers, for tests and benchmarks.

The system pcscd always listens on /run/pcscd/pcscd.comm. To run a pcscd of our own,
which tests may stop, restart or break, and with vpcd ports nobody else uses, we start it
in a private mount namespace (``unshare -m``) with a tmpfs on /run/pcscd. A holder
process keeps the namespace alive across pcscd restarts; clients reach the daemon's
socket through ``/proc/<holder>/root/run/pcscd/pcscd.comm``, named to libpcsclite by the
``PCSCLITE_CSOCK_NAME`` environment variable (read once per process: set it before the
first PC/SC call). Needs root, as the README's commands run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"


def _free_port_pair() -> int:
    """A port p such that p and p+1 are free on 127.0.0.1 and 0.0.0.0."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))  # noqa: S104 - probing, closed at once
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("0.0.0.0", port + 1))  # noqa: S104
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


class PrivatePcscd:
    """pcscd in its own mount namespace, with one vpcd entry (two readers).

    Readers are "Virtual PCD 00 00" on :attr:`port` and "Virtual PCD 00 01" on
    ``port + 1``.
    """

    def __init__(
        self, port: int | None = None, *, debug_log: bool = False, readers: bool = True
    ) -> None:
        self.port = port or _free_port_pair()
        self.readers = readers
        self.dir = Path(tempfile.mkdtemp(prefix="eid-pcscd-"))
        self.conf = self.dir / "reader.conf.d"
        self.conf.mkdir()
        self.vpcd_entry = (
            'FRIENDLYNAME "Virtual PCD"\n'
            f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{self.port:04X}\n"
        )
        if readers:
            (self.conf / "vpcd").write_text(self.vpcd_entry)
        self.log = self.dir / "pcscd.log"
        self.debug_log = debug_log
        self._holder: subprocess.Popen[bytes] | None = None
        self._pcscd: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        assert self._holder is not None
        return f"/proc/{self._holder.pid}/root/run/pcscd/pcscd.comm"

    @property
    def ports(self) -> tuple[int, int]:
        return self.port, self.port + 1

    def start(self) -> PrivatePcscd:
        if shutil.which("pcscd") is None or not Path(VPCD_DRIVER).exists():
            raise RuntimeError("pcscd and vsmartcard-vpcd are needed (run: make setup)")
        self._holder = subprocess.Popen(
            [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                "mkdir -p /run/pcscd && mount -t tmpfs tmpfs /run/pcscd && echo ready "
                "&& exec sleep infinity",
            ],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != b"ready":
            raise RuntimeError("could not create a private mount namespace (root needed)")
        self.start_daemon()
        return self

    def start_daemon(self) -> None:
        """Start pcscd inside the namespace and wait until it serves and vpcd listens."""
        assert self._holder is not None
        args = ["nsenter", "-t", str(self._holder.pid), "-m", "pcscd", "-f", "-c", str(self.conf)]
        if self.debug_log:
            args.append("-d")
        with open(self.log, "ab") as log:
            self._pcscd = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        sock = Path(self.socket_path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sock.exists() and (not self.readers or self._port_open(self.port)):
                return
            if self._pcscd.poll() is not None:
                raise RuntimeError(f"pcscd exited: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("pcscd did not come up")

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        """Stop pcscd (the namespace stays, so it can be started again)."""
        if self._pcscd is None:
            return
        self._pcscd.send_signal(sig)
        try:
            self._pcscd.wait(5)
        except subprocess.TimeoutExpired:
            self._pcscd.kill()
            self._pcscd.wait()
        self._pcscd = None
        try:
            Path(self.socket_path).unlink()
        except OSError:
            pass

    def restart_daemon(self) -> None:
        self.stop_daemon()
        self.start_daemon()

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.stop_daemon()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            self._holder = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def use(self) -> None:
        """Point this process's libpcsclite at this daemon (before any PC/SC call)."""
        os.environ[SOCKET_ENV] = self.socket_path

    def env(self) -> dict[str, str]:
        """An environment for child processes (OpenSC tools, the agent) using this daemon."""
        return {**os.environ, SOCKET_ENV: self.socket_path}

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
