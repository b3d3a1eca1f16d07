"""Which OS user owns the other end of a loopback TCP connection (no sockets library here).

The agent serves only the desktop user who runs it (brief: "serve only the desktop user who
owns the agent"). A loopback TCP connection carries no credentials, so the owner of the
*client's* socket is looked up in the operating system's TCP table, keyed by the connection's
two endpoints: the client's socket is the row whose local address is the peer's
``(address, port)`` and whose remote address is the agent's ``(address, port)``.

* Linux: the kernel's exact socket lookup through ``NETLINK_SOCK_DIAG`` (``inet_diag``, the
  interface ``ss`` uses; well under a millisecond), else ``/proc/net/tcp`` and
  ``/proc/net/tcp6`` (the ``uid`` column is the socket's owner; a few ms with 2,000 sockets).
  Tested (tests/test_peer_isolation.py, a client run as ``nobody``).
* Windows: ``GetExtendedTcpTable(TCP_TABLE_OWNER_PID_ALL)`` gives the owning process; the
  peer is the same user when that process runs in the agent's session (``ProcessIdToSessionId``)
  with the agent's user SID (``OpenProcessToken`` + ``GetTokenInformation(TokenUser)``).
  Written to the documented API, NOT exercised by the test suite (no Windows here).
* macOS: ``lsof -nP -iTCP@addr:port -Fpun`` names the process and uid holding the client's
  socket. ``lsof`` run by an ordinary user does not see other users' sockets, which the
  check treats as "not the same user". NOT exercised by the test suite (no macOS here).

Every failure to find the owner counts as "another user": the check fails closed.
:data:`LOOKUP_IS_CHEAP` says whether a lookup may run on the event loop (Linux) or belongs in
a worker thread (``lsof`` takes tens of milliseconds).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PeerOwner",
    "diag_socket_uid",
    "find_pid_in_tcp_table",
    "linux_socket_uid",
    "peer_owner",
    "proc_socket_uid",
]

logger = logging.getLogger(__name__)

Endpoint = tuple[str, int]
LOOKUP_IS_CHEAP = sys.platform.startswith("linux")


@dataclass(frozen=True)
class PeerOwner:
    """The verdict on one connection's peer."""

    same_user: bool
    detail: str  # for the log: "uid 65534", "pid 812 in session 2", "unknown"


def peer_owner(peer: Endpoint, local: Endpoint) -> PeerOwner:
    """Who owns the client end ``peer`` of a connection accepted on ``local``."""
    try:
        if sys.platform.startswith("linux"):
            return _linux(peer, local)
        if sys.platform == "win32":
            return _windows(peer, local)
        if sys.platform == "darwin":
            return _macos(peer, local)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the peer
        logger.warning("cannot tell who owns %s:%d (%s): refused", peer[0], peer[1], exc)
        return PeerOwner(False, "unknown")
    return PeerOwner(False, f"unsupported platform {sys.platform}")


# --- Linux ----------------------------------------------------------------------------


def _proc_hex(address: str) -> tuple[str, bool]:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words in host byte order, hex."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    packed = ip.packed
    words = (packed[i : i + 4] for i in range(0, len(packed), 4))
    return "".join(f"{int.from_bytes(word, sys.byteorder):08X}" for word in words), ip.version == 6


def _mapped(address: str) -> str | None:
    """``::ffff:a.b.c.d`` for an IPv4 address (a dual-stack socket shows it so in tcp6)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return f"::ffff:{ip}" if ip.version == 4 else None


_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NOCOOKIE = 0xFFFFFFFF


def diag_socket_uid(peer: Endpoint, local: Endpoint) -> int | None:
    """The owner of the TCP socket ``peer`` → ``local``, by the kernel's exact lookup.

    One ``inet_diag_req_v2`` (family, TCP, the socket's 4-tuple, no cookie) on a
    ``NETLINK_SOCK_DIAG`` socket; the answer's ``inet_diag_msg.idiag_uid`` is the owner.

    Raises:
        OSError: no sock_diag here (old kernel, seccomp); the caller falls back to /proc.
    """
    peer_ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    local_ip = ipaddress.ip_address(local[0].split("%", 1)[0])
    if peer_ip.version != local_ip.version:
        return None
    family = socket.AF_INET6 if peer_ip.version == 6 else socket.AF_INET
    # inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2]
    sockid = (struct.pack(">HH", peer[1], local[1])
              + peer_ip.packed.ljust(16, b"\0") + local_ip.packed.ljust(16, b"\0")
              + struct.pack("=III", 0, _NOCOOKIE, _NOCOOKIE))
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as diag:  # NETLINK_SOCK_DIAG
        diag.settimeout(2)
        diag.sendto(header + request, (0, 0))
        answer = diag.recv(65536)
    length, kind = struct.unpack_from("=IH", answer, 0)
    if kind == _NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", answer, 16)
        if -code in (errno.ENOENT, 0):
            return None
        raise OSError(-code, os.strerror(-code))
    if kind != _SOCK_DIAG_BY_FAMILY or length < 16 + 72:
        return None
    # inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid
    state = answer[16 + 1]
    (uid,) = struct.unpack_from("=I", answer, 16 + 64)
    return None if state == 10 else int(uid)  # never a listening socket (TCP_LISTEN)


def linux_socket_uid(peer: Endpoint, local: Endpoint) -> int | None:
    """The uid owning the socket whose local end is ``peer`` and remote end ``local``."""
    try:
        return diag_socket_uid(peer, local)
    except OSError as exc:
        logger.debug("sock_diag unavailable (%s): reading /proc/net/tcp", exc)
        return proc_socket_uid(peer, local)


def proc_socket_uid(peer: Endpoint, local: Endpoint, proc: Path = Path("/proc")) -> int | None:
    """:func:`linux_socket_uid` from ``/proc/net/tcp{,6}`` (slower: the kernel prints them all)."""
    candidates: list[tuple[Endpoint, Endpoint]] = [(peer, local)]
    mapped_peer, mapped_local = _mapped(peer[0]), _mapped(local[0])
    if mapped_peer and mapped_local:
        candidates.append(((mapped_peer, peer[1]), (mapped_local, local[1])))
    for (p_addr, p_port), (l_addr, l_port) in candidates:
        p_hex, v6 = _proc_hex(p_addr)
        l_hex, _ = _proc_hex(l_addr)
        key = f" {p_hex}:{p_port:04X} {l_hex}:{l_port:04X} "
        table = proc / "net" / ("tcp6" if v6 else "tcp")
        try:
            text = table.read_text(encoding="ascii")
        except OSError:
            continue
        at = text.find(key)
        if at < 0:
            continue
        end = text.find("\n", at)
        line = text[at : end if end >= 0 else None]
        fields = line.split()
        # fields: local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        if len(fields) >= 7 and fields[2] != "0A":  # never a listening socket
            return int(fields[6])
    return None


def _linux(peer: Endpoint, local: Endpoint) -> PeerOwner:
    uid = linux_socket_uid(peer, local)
    if uid is None:
        return PeerOwner(False, "no such socket in /proc/net/tcp")
    return PeerOwner(uid == os.geteuid(), f"uid {uid}")


# --- macOS (untested here) -------------------------------------------------------------


def _lsof_name(endpoint: Endpoint) -> str:
    host = endpoint[0].split("%", 1)[0]
    return f"[{host}]:{endpoint[1]}" if ":" in host else f"{host}:{endpoint[1]}"


def _macos(peer: Endpoint, local: Endpoint) -> PeerOwner:
    wanted = f"{_lsof_name(peer)}->{_lsof_name(local)}"
    output = subprocess.run(  # noqa: S603 - fixed program, our own arguments
        ["/usr/sbin/lsof", "-nP", f"-iTCP@{_lsof_name(peer)}", "-Fpun"],
        capture_output=True, text=True, timeout=5, check=False,
    ).stdout
    pid = uid = None
    for line in output.splitlines():
        tag, value = line[:1], line[1:]
        if tag == "p":
            pid, uid = int(value), None
        elif tag == "u":
            uid = int(value)
        elif tag == "n" and value == wanted and uid is not None:
            return PeerOwner(uid == os.geteuid(), f"uid {uid} (pid {pid})")
    return PeerOwner(False, "lsof does not show the socket")


# --- Windows (untested here) -----------------------------------------------------------


def _windows_owner_pid(peer: Endpoint, local: Endpoint) -> int | None:
    import ctypes  # noqa: PLC0415
    from ctypes import wintypes  # noqa: PLC0415

    iphlpapi = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined]
    v6 = ipaddress.ip_address(peer[0].split("%", 1)[0]).version == 6
    family = 23 if v6 else 2  # AF_INET6, AF_INET
    table_class = 5  # TCP_TABLE_OWNER_PID_ALL
    size = wintypes.DWORD(0)
    buffer = ctypes.create_string_buffer(0)
    for _ in range(5):  # the table may grow between the two calls
        rc = iphlpapi.GetExtendedTcpTable(buffer, ctypes.byref(size), False, family, table_class, 0)
        if rc == 0:
            break
        if rc != 122:  # ERROR_INSUFFICIENT_BUFFER
            return None
        buffer = ctypes.create_string_buffer(size.value)
    else:
        return None
    return find_pid_in_tcp_table(buffer.raw, v6, peer, local)


def find_pid_in_tcp_table(raw: bytes, v6: bool, peer: Endpoint, local: Endpoint) -> int | None:
    """The owning PID of the client's row in a ``MIB_TCP(6)TABLE_OWNER_PID`` buffer.

    Layout (iphlpapi docs): ``DWORD dwNumEntries`` then the rows.
    MIB_TCPROW_OWNER_PID: state, local addr, local port, remote addr, remote port, pid.
    MIB_TCP6ROW_OWNER_PID: local addr[16], scope, local port, remote addr[16], scope,
    remote port, state, pid. Addresses in network order; ports in network byte order in
    the low 16 bits of their DWORD (its first two bytes in memory).
    """
    import struct  # noqa: PLC0415

    peer_ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    local_ip = ipaddress.ip_address(local[0].split("%", 1)[0])
    (count,) = struct.unpack_from("<I", raw, 0)
    row = struct.Struct("<16sI4s16sI4sII" if v6 else "<I4s4s4s4sI")
    for index in range(count):
        fields = row.unpack_from(raw, 4 + index * row.size)
        if v6:
            l_addr, _, l_port, r_addr, _, r_port, _state, pid = fields
        else:
            _state, l_addr, l_port, r_addr, r_port, pid = fields
        if (
            l_addr == peer_ip.packed and int.from_bytes(l_port[:2], "big") == peer[1]
            and r_addr == local_ip.packed and int.from_bytes(r_port[:2], "big") == local[1]
        ):
            return int(pid)
    return None


def _windows_user(pid: int | None) -> tuple[int, str] | None:
    """(session id, user SID string) of a process; ``None``: our own process."""
    import ctypes  # noqa: PLC0415
    from ctypes import wintypes  # noqa: PLC0415

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    session = wintypes.DWORD(0)
    target = kernel32.GetCurrentProcessId() if pid is None else pid
    if not kernel32.ProcessIdToSessionId(wintypes.DWORD(target), ctypes.byref(session)):
        return None
    # HANDLE objects, not ints: without argtypes ctypes would pass a 64-bit handle as an int
    if pid is None:
        process = wintypes.HANDLE(kernel32.GetCurrentProcess())  # the pseudo handle (-1)
    else:
        process = wintypes.HANDLE(kernel32.OpenProcess(0x1000, False, wintypes.DWORD(pid)))
        if not process.value:  # PROCESS_QUERY_LIMITED_INFORMATION refused: not ours
            return None
    token = wintypes.HANDLE()
    try:
        if not advapi32.OpenProcessToken(process, 0x0008, ctypes.byref(token)):  # TOKEN_QUERY
            return None
        try:
            needed = wintypes.DWORD(0)
            advapi32.GetTokenInformation(token, 1, None, 0, ctypes.byref(needed))  # TokenUser
            info = ctypes.create_string_buffer(needed.value)
            if not advapi32.GetTokenInformation(token, 1, info, needed, ctypes.byref(needed)):
                return None
            sid = ctypes.cast(info, ctypes.POINTER(ctypes.c_void_p))[0]  # TOKEN_USER.User.Sid
            text = wintypes.LPWSTR()
            if not advapi32.ConvertSidToStringSidW(ctypes.c_void_p(sid), ctypes.byref(text)):
                return None
            try:
                return session.value, str(text.value)
            finally:
                kernel32.LocalFree(text)
        finally:
            kernel32.CloseHandle(token)
    finally:
        if pid is not None:
            kernel32.CloseHandle(process)


def _windows(peer: Endpoint, local: Endpoint) -> PeerOwner:
    pid = _windows_owner_pid(peer, local)
    if pid is None:
        return PeerOwner(False, "no such socket in the TCP table")
    theirs, ours = _windows_user(pid), _windows_user(None)
    if theirs is None or ours is None:
        return PeerOwner(False, f"pid {pid}: session or user unknown")
    return PeerOwner(theirs == ours, f"pid {pid} in session {theirs[0]}, user {theirs[1]}")
