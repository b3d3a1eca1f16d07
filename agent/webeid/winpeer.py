"""Windows: whose process is at the other end of a named pipe (standard library ``ctypes``).

Both ends of the Web eID channel check that the other is the same Windows user: the agent
checks each client (``GetNamedPipeClientProcessId``), the host checks the server
(``GetNamedPipeServerProcessId``), comparing the user SIDs of the two processes' tokens.
Written against the Win32 documentation; untested here (no Windows machine).
"""

from __future__ import annotations

import ctypes
from ctypes import wintypes
from typing import Any

__all__ = ["client_pid", "same_user", "server_pid"]

PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1  # TOKEN_INFORMATION_CLASS.TokenUser


def _dlls() -> tuple[Any, Any]:  # pragma: no cover - Windows only
    windll = getattr(ctypes, "WinDLL")  # noqa: B009 - absent on other systems
    kernel32 = windll("kernel32", use_last_error=True)
    advapi32 = windll("advapi32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    for name in ("GetNamedPipeClientProcessId", "GetNamedPipeServerProcessId"):
        getattr(kernel32, name).argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG)]
        getattr(kernel32, name).restype = wintypes.BOOL
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.OpenProcessToken.restype = wintypes.BOOL
    advapi32.GetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                             wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)]
    advapi32.GetTokenInformation.restype = wintypes.BOOL
    advapi32.GetLengthSid.argtypes = [ctypes.c_void_p]
    advapi32.GetLengthSid.restype = wintypes.DWORD
    return kernel32, advapi32


def _error(what: str) -> OSError:  # pragma: no cover
    code = getattr(ctypes, "get_last_error")()  # noqa: B009
    return OSError(code, f"{what} failed (Windows error {code})")


def _pipe_pid(handle: int, function: str) -> int:  # pragma: no cover
    kernel32, _ = _dlls()
    pid = wintypes.ULONG()
    if not getattr(kernel32, function)(wintypes.HANDLE(handle), ctypes.byref(pid)):
        raise _error(function)
    return int(pid.value)


def client_pid(pipe_handle: int) -> int:  # pragma: no cover
    return _pipe_pid(pipe_handle, "GetNamedPipeClientProcessId")


def server_pid(pipe_handle: int) -> int:  # pragma: no cover
    return _pipe_pid(pipe_handle, "GetNamedPipeServerProcessId")


def _token_sid(process: Any) -> bytes:  # pragma: no cover
    kernel32, advapi32 = _dlls()
    token = wintypes.HANDLE()
    if not advapi32.OpenProcessToken(process, TOKEN_QUERY, ctypes.byref(token)):
        raise _error("OpenProcessToken")
    try:
        size = wintypes.DWORD()
        advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        if not advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, buffer, size, ctypes.byref(size)):
            raise _error("GetTokenInformation")
        sid = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0]  # TOKEN_USER.User.Sid
        return ctypes.string_at(sid, advapi32.GetLengthSid(sid))
    finally:
        kernel32.CloseHandle(token)


def same_user(pid: int) -> bool:  # pragma: no cover
    """Does process ``pid`` run as the same user as this process?"""
    kernel32, _ = _dlls()
    process = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not process:
        return False
    try:
        theirs = _token_sid(process)
    except OSError:
        return False
    finally:
        kernel32.CloseHandle(process)
    return theirs == _token_sid(kernel32.GetCurrentProcess())
