"""``eid-agent-webeid-host``: the ``eu.webeid`` native messaging host, backed by the agent.

The browser (through the Web eID extension) starts one process per action with the
extension's origin as argument (Chrome: ``chrome-extension://<id>/``; Firefox: the manifest
path and the add-on ID). On stdin/stdout, frames are a 4-byte native-order length and UTF-8
JSON. The host:

1. writes ``{"version": "2.9.0+eid-agent.<agent version>"}`` at once (strict SemVer, major 2
   as the extension requires);
2. reads exactly one command (5 to 8192 bytes; anything else gets an error reply);
3. checks it as the official app does (exact argument names plus optional ``lang``; origin
   ``https://host[:port]``, at most 255 characters, no path, query or fragment) — a request
   that fails never reaches the agent, so never a card;
4. passes it to the resident agent over the per-user channel (starting the agent when it
   is not running, waiting at most :data:`AGENT_START_TIMEOUT`), and writes one reply
   (at most 1 MiB) in the shapes the extension checks;
5. exits. If the browser closes the port meanwhile (stdin ends), the host exits at once,
   which drops the channel: the agent cancels the operation (dialog closed, no PIN sent).

Errors are ``{"error": {"code", "message"}}`` with codes web-eid.js knows; the agent's own
code, when there is one, rides along as ``eidAgentCode`` (web-eid.js copies extra fields
onto the error it raises).

Standard library only, so the browser's wait is short: no Qt, pyscard, websockets or
cryptography in this process (``tests/unit/test_webeid_host.py`` and
``tests/unit/test_boundaries.py`` check ``sys.modules``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from agent import __version__
from agent.webeid.paths import UnsafeChannelError, channel_path, check_private_dir

__all__ = ["AGENT_START_TIMEOUT", "PROTOCOL_VERSION", "VERSION", "HostError", "handle", "main"]

PROTOCOL_VERSION = "2.9.0"
"""The Web eID app version whose protocol this host speaks (the extension checks the major)."""
VERSION = f"{PROTOCOL_VERSION}+eid-agent.{__version__}"
MIN_REQUEST = 5
MAX_REQUEST = 8192
MAX_REPLY = 1024 * 1024
AGENT_START_TIMEOUT = 10.0
"""How long the host waits for an agent it started."""
ORIGIN_MAX = 255
NONCE_MIN, NONCE_MAX = 44, 128
HASH_LENGTHS = {
    "SHA-224": 28, "SHA-256": 32, "SHA-384": 48, "SHA-512": 64,
    "SHA3-224": 28, "SHA3-256": 32, "SHA3-384": 48, "SHA3-512": 64,
}
_ORIGIN = re.compile(
    r"https://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")

USER_CANCELLED = "ERR_WEBEID_USER_CANCELLED"
USER_TIMEOUT = "ERR_WEBEID_USER_TIMEOUT"
NATIVE_FATAL = "ERR_WEBEID_NATIVE_FATAL"
INVALID_ARGUMENT = "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
NATIVE_UNAVAILABLE = "ERR_WEBEID_NATIVE_UNAVAILABLE"

# The agent's error codes as web-eid.js knows them: its own names pass through; a site the
# user refused is a cancel (the user said no); everything else is fatal, with the agent's
# message and its code in ``eidAgentCode``.
_AGENT_CODES = {
    "ERR_WEBEID_USER_CANCELLED": USER_CANCELLED,
    "ERR_WEBEID_USER_TIMEOUT": USER_TIMEOUT,
    "ERR_WEBEID_NATIVE_INVALID_ARGUMENT": INVALID_ARGUMENT,
    "ERR_WEBEID_NATIVE_FATAL": NATIVE_FATAL,
    "ERR_EID_ORIGIN_NOT_ALLOWED": USER_CANCELLED,
}

# command -> (required argument names, agent method, reply fields that must be truthy)
_COMMANDS: Mapping[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "authenticate": (
        ("challengeNonce", "origin"), "authenticate",
        ("unverifiedCertificate", "algorithm", "signature", "format", "appVersion"),
    ),
    "get-signing-certificate": (
        ("origin",), "getSigningCertificate", ("certificate", "supportedSignatureAlgorithms"),
    ),
    "sign": (
        ("certificate", "hash", "hashFunction", "origin"), "sign", ("signature", "signatureAlgorithm"),
    ),
}


class HostError(Exception):
    """Becomes the error reply ``{"error": {"code", "message"[, "eidAgentCode"]}}``."""

    def __init__(self, code: str, message: str, agent_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.agent_code = agent_code

    def reply(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.agent_code:
            error["eidAgentCode"] = self.agent_code
        return {"error": error}


# --- framing ------------------------------------------------------------------------------


def write_frame(out: BinaryIO, message: Mapping[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_REPLY:
        data = json.dumps(HostError(NATIVE_FATAL, "the reply exceeds 1 MiB").reply()).encode("utf-8")
    out.write(struct.pack("=I", len(data)) + data)
    out.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_request(stream: BinaryIO) -> dict[str, Any] | None:
    """One request frame, checked; None when the browser closed the pipe first.

    Raises:
        HostError: a frame outside 5-8192 bytes, not JSON, or not ``{command, arguments}``.
    """
    header = _read_exactly(stream, 4)
    if header is None:
        return None
    (size,) = struct.unpack("=I", header)
    if not MIN_REQUEST <= size <= MAX_REQUEST:
        raise HostError(NATIVE_FATAL, f"request of {size} bytes; allowed {MIN_REQUEST} to {MAX_REQUEST}")
    body = _read_exactly(stream, size)
    if body is None:
        return None
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HostError(NATIVE_FATAL, "the request is not JSON") from None
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("command"), str)
        or not isinstance(request.get("arguments"), dict)
    ):
        raise HostError(NATIVE_FATAL, "the request must be {command: string, arguments: object}")
    return request


# --- checks -------------------------------------------------------------------------------


def check_origin(value: Any) -> str:
    """The origin as the official app accepts it: https, <= 255 characters, nothing after the port."""
    if not isinstance(value, str) or not value:
        raise HostError(INVALID_ARGUMENT, "origin is missing")
    if len(value) > ORIGIN_MAX:
        raise HostError(INVALID_ARGUMENT, f"origin is longer than {ORIGIN_MAX} characters")
    if not _ORIGIN.fullmatch(value):
        raise HostError(
            INVALID_ARGUMENT,
            f"origin must be https://host[:port] with no path, query or fragment: {value[:80]!r}",
        )
    port = value.rsplit(":", 1)[-1] if value.count(":") > 1 and not value.endswith("]") else None
    if port is not None and port.isdigit() and not 0 < int(port) < 65536:
        raise HostError(INVALID_ARGUMENT, f"origin has an invalid port: {value!r}")
    return value


def _string(arguments: Mapping[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value:
        raise HostError(INVALID_ARGUMENT, f"argument {name!r} must be a non-empty string")
    return value


def check_arguments(command: str, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """(origin, params for the agent, lang) of a card command, or HostError."""
    required, _method, _fields = _COMMANDS[command]
    names = set(arguments) - {"lang"}
    if names != set(required):
        missing = sorted(set(required) - names)
        extra = sorted(names - set(required))
        raise HostError(
            INVALID_ARGUMENT,
            f"{command} takes {', '.join(required)} (and lang)"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else ""),
        )
    origin = check_origin(arguments.get("origin"))
    lang = arguments.get("lang")
    lang = lang if isinstance(lang, str) and _LANG.fullmatch(lang) else None  # else: agent's language
    params: dict[str, Any] = {}
    if command == "authenticate":
        nonce = _string(arguments, "challengeNonce")
        if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise HostError(
                INVALID_ARGUMENT, f"challengeNonce must be {NONCE_MIN} to {NONCE_MAX} characters"
            )
        params["challengeNonce"] = nonce
    elif command == "sign":
        hash_function = _string(arguments, "hashFunction")
        if hash_function not in HASH_LENGTHS:
            raise HostError(INVALID_ARGUMENT, f"unsupported hashFunction {hash_function[:16]!r}")
        digest = _string(arguments, "hash")
        try:
            raw = base64.b64decode(digest, validate=True)
        except (binascii.Error, ValueError):
            raise HostError(INVALID_ARGUMENT, "hash is not base64") from None
        if len(raw) != HASH_LENGTHS[hash_function]:
            raise HostError(
                INVALID_ARGUMENT,
                f"a {hash_function} hash is {HASH_LENGTHS[hash_function]} bytes, not {len(raw)}",
            )
        params.update(hash=digest, hashFunction=hash_function, certificate=_string(arguments, "certificate"))
    if lang:
        params["options"] = {"lang": lang}
    return origin, params, lang


# --- the agent ----------------------------------------------------------------------------


def agent_command() -> list[str]:
    """How to start the resident agent: the frozen ``eid-agent`` next to this executable,
    or this Python's ``-m agent``."""
    if getattr(sys, "frozen", False):  # Windows: the windowless build, as the logon entry
        name = "eid-agentw.exe" if sys.platform == "win32" else "eid-agent"
        return [str(Path(sys.executable).with_name(name)), "serve"]
    return [sys.executable, "-m", "agent", "serve"]


def start_agent() -> None:
    """Start ``eid-agent serve`` detached from the browser (its own session / process group),
    as this user, with the same environment (so ``EID_AGENT_CONFIG_DIR`` carries over)."""
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
        "cwd": str(Path.home()), "close_fds": True,
    }
    if sys.platform == "win32":  # pragma: no cover - leave the browser's job object if allowed
        flags = 0x00000008 | 0x00000200  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
        try:
            subprocess.Popen(agent_command(), creationflags=flags | 0x01000000, **options)
            return
        except OSError:
            pass
        subprocess.Popen(agent_command(), creationflags=flags, **options)
        return
    subprocess.Popen(agent_command(), start_new_session=True, **options)


class Channel:
    """The host's end of the per-user channel: one origin, one request, one reply."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self._file: Any = None
        self.aborted = False  # the browser closed the port

    def abort(self) -> None:
        """The browser went away: drop the channel (the agent cancels) and start nothing."""
        self.aborted = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif self._file is not None:  # pragma: no cover - Windows: a blocked read would not
            os._exit(0)  # wake up on close; leaving closes the pipe, and the agent cancels

    def try_connect(self) -> bool:
        if self.aborted:
            raise HostError(NATIVE_UNAVAILABLE, "the browser closed the connection")
        if sys.platform == "win32":  # pragma: no cover - untested here: named pipe
            return self._open_pipe()
        try:
            check_private_dir(Path(self.path).parent)
        except FileNotFoundError:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            return False
        if hasattr(socket, "SO_PEERCRED"):  # the agent must be this user's too
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                sock.close()
                raise UnsafeChannelError("the channel is served by another user")
        self.sock = sock
        self._file = sock.makefile("rwb", buffering=0)
        if self.aborted:  # the port closed while we connected
            self.abort()
        return True

    def _open_pipe(self) -> bool:  # pragma: no cover - Windows only, untested here
        import msvcrt

        from agent.webeid import winpeer

        try:
            pipe = open(self.path, "r+b", buffering=0)  # noqa: SIM115 - kept open
        except OSError:
            return False
        try:
            os_handle = getattr(msvcrt, "get_osfhandle")  # noqa: B009 - Windows only
            same = winpeer.same_user(winpeer.server_pid(os_handle(pipe.fileno())))
        except OSError:
            same = False
        if not same:
            pipe.close()
            raise UnsafeChannelError("the channel is served by another user's process")
        self._file = pipe
        return True

    def connect(self, *, start: bool = True, timeout: float = AGENT_START_TIMEOUT) -> None:
        """Connect, starting the agent first when nobody answers.

        Raises:
            HostError: NATIVE_UNAVAILABLE when no agent answers within ``timeout``;
                NATIVE_FATAL when the channel's folder is not private to this user.
        """
        try:
            if self.try_connect():
                return
            if not start:
                raise HostError(NATIVE_UNAVAILABLE, "eid-agent is not running")
            try:
                start_agent()
            except OSError as exc:
                raise HostError(NATIVE_UNAVAILABLE, f"cannot start eid-agent: {exc}") from None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if self.try_connect():
                    return
        except UnsafeChannelError as exc:
            raise HostError(NATIVE_FATAL, f"the agent's channel is not safe: {exc}") from None
        raise HostError(NATIVE_UNAVAILABLE, f"eid-agent did not start within {timeout:g} s")

    def answers(self) -> bool:
        """For ``quit``: does an agent answer? (never raises, never waits)"""
        try:
            answered = self.try_connect()
        except (OSError, HostError):
            return False
        self.close()
        return answered

    def _send(self, message: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n")

    def _receive(self) -> dict[str, Any]:
        line = self._file.readline(4 * MAX_REPLY)
        if not line:
            raise HostError(NATIVE_FATAL, "the agent closed the channel")
        try:
            message = json.loads(line)
        except ValueError:
            raise HostError(NATIVE_FATAL, "the agent's reply is not JSON") from None
        if not isinstance(message, dict):
            raise HostError(NATIVE_FATAL, "the agent's reply is not an object")
        return message

    def call(self, origin: str, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One JSON-RPC call for ``origin``; the result, or HostError."""
        self._send({"origin": origin})
        hello = self._receive()
        if "error" in hello:  # refused before any request: machine policy, not the user
            refused = _agent_error(hello["error"])
            raise HostError(NATIVE_FATAL, str(refused), refused.agent_code)
        self._send({"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params)})
        reply = self._receive()
        if "error" in reply:
            raise _agent_error(reply["error"])
        result = reply.get("result")
        if not isinstance(result, dict):
            raise HostError(NATIVE_FATAL, "the agent sent no result")
        return result

    def close(self) -> None:
        for closable in (self._file, self.sock):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
        self._file = self.sock = None


def _agent_error(error: Any) -> HostError:
    if not isinstance(error, dict):
        return HostError(NATIVE_FATAL, "the agent failed")
    data = error.get("data")
    raw_code = data.get("code") if isinstance(data, dict) else None
    agent_code = raw_code if isinstance(raw_code, str) else None
    raw_message = error.get("message")
    message = raw_message if isinstance(raw_message, str) else "the agent failed"
    code = _AGENT_CODES.get(agent_code or "", NATIVE_FATAL)
    return HostError(code, message, agent_code)


# --- one session --------------------------------------------------------------------------


def handle(request: Mapping[str, Any], channel: Channel) -> dict[str, Any]:
    """The reply to one checked request (errors as error replies)."""
    command = request["command"]
    arguments = request["arguments"]
    try:
        if command in ("quit", "status"):
            if not channel.answers():  # warm up: the next action will not wait
                _start_quietly()
            return {}
        if command not in _COMMANDS:
            raise HostError(NATIVE_FATAL, f"command {command[:40]!r} is not supported")
        origin, params, _lang = check_arguments(command, arguments)
        _required, method, fields = _COMMANDS[command]
        channel.connect()
        result = channel.call(origin, method, params)
        if not all(result.get(name) for name in fields):
            raise HostError(NATIVE_FATAL, "the agent's reply lacks fields")
        if command == "sign":
            algorithm = result["signatureAlgorithm"]
            if not isinstance(algorithm, dict) or not all(
                algorithm.get(k) for k in ("cryptoAlgorithm", "hashFunction", "paddingScheme")
            ):
                raise HostError(NATIVE_FATAL, "the agent's signatureAlgorithm is incomplete")
        return {name: result[name] for name in fields}
    except HostError as exc:
        return exc.reply()
    except Exception as exc:  # noqa: BLE001 - the browser gets a reply, whatever happened
        return HostError(NATIVE_FATAL, f"the host failed: {type(exc).__name__}").reply()


def _start_quietly() -> None:
    try:
        start_agent()
    except OSError:
        pass


def _watch_stdin(stdin: BinaryIO, channel: Channel) -> None:
    """The browser closed the port: drop the channel, so the agent cancels the operation."""
    fd = stdin.fileno()  # raw reads: a daemon thread must not hold the buffered reader's lock
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    channel.abort()


def _binary_stdio() -> tuple[BinaryIO, BinaryIO]:
    if sys.platform == "win32":  # pragma: no cover - text mode would corrupt frames
        import msvcrt

        msvcrt.setmode(sys.stdin.fileno(), os.O_BINARY)
        msvcrt.setmode(sys.stdout.fileno(), os.O_BINARY)
    return sys.stdin.buffer, sys.stdout.buffer


def main(argv: list[str] | None = None) -> int:
    """One native messaging session; ``argv`` is the browser's (caller origin etc.)."""
    stdin, stdout = _binary_stdio()
    write_frame(stdout, {"version": VERSION})
    try:
        request = read_request(stdin)
    except HostError as exc:
        write_frame(stdout, exc.reply())
        return 1
    if request is None:
        return 0
    channel = Channel(channel_path())
    threading.Thread(target=_watch_stdin, args=(stdin, channel), daemon=True).start()
    try:
        reply = handle(request, channel)
    finally:
        channel.close()
    try:
        write_frame(stdout, reply)
    except OSError:  # the browser closed the pipe
        return 0
    return 0 if "error" not in reply or channel.aborted else 1


if __name__ == "__main__":
    sys.exit(main())
