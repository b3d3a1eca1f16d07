"""Managed browser policies that let listed portals reach the agent on loopback without the
browser's Local Network Access prompt (Linux; the MSI writes the Windows equivalents).

- Chromium ``/etc/chromium/policies/managed/eid-agent.json`` and Google Chrome
  ``/etc/opt/chrome/policies/managed/eid-agent.json``: the list policies
  ``LocalNetworkAccessAllowedForUrls`` and ``LoopbackNetworkAllowedForUrls`` (origins). Our own
  file: other managed files in the folder are left alone (Chromium merges them).
- Firefox ``/etc/firefox/policies/policies.json``: ``LocalNetworkAccess.SkipDomains`` (host
  names). Debian's firefox-esr reads this path too (its application name is "Firefox"; the
  system policy folder is ``/etc/<name in lower case>/policies``). That file is shared with
  other policies, so it is merged: only ``SkipDomains`` entries are added or removed.
- Windows (run by the MSI, elevated, from ``ALLOWEDORIGINS``): the same two list policies for
  Chrome (``HKLM\\SOFTWARE\\Policies\\Google\\Chrome\\<Policy>``) and Edge
  (``…\\Microsoft\\Edge\\<Policy>``), as REG_SZ values ``1``..``n``. The MSI cannot split a
  property into numbered values by itself, so it runs ``eid-agent write-browser-policy
  --windows-registry --origins "[ALLOWEDORIGINS]"`` (no fixed maximum, the same origin checks
  as everywhere). Only https origins go there; a ``http://localhost`` development origin in
  ``ALLOWEDORIGINS`` is skipped (such pages are not restricted by the browsers anyway).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from agent.core.origin import normalize_origin
from agent.errors import OriginNotAllowedError

__all__ = [
    "CHROME_POLICIES",
    "CHROMIUM_FILES",
    "FIREFOX_FILE",
    "WINDOWS_KEYS",
    "Registry",
    "remove",
    "remove_windows",
    "split_origins",
    "windows_lists",
    "write",
    "write_windows",
]

CHROME_POLICIES = ("LocalNetworkAccessAllowedForUrls", "LoopbackNetworkAllowedForUrls")
CHROMIUM_FILES = (
    Path("etc/chromium/policies/managed/eid-agent.json"),
    Path("etc/opt/chrome/policies/managed/eid-agent.json"),
)
FIREFOX_FILE = Path("etc/firefox/policies/policies.json")
WINDOWS_KEYS = ("SOFTWARE\\Policies\\Google\\Chrome", "SOFTWARE\\Policies\\Microsoft\\Edge")


def split_origins(text: str) -> list[str]:
    """An MSI property's list: origins separated by spaces, semicolons or commas."""
    return [item for item in re.split(r"[\s;,]+", text) if item]


def _origins(origins: Iterable[str]) -> list[str]:
    out: list[str] = []
    for origin in origins:
        try:
            normal = normalize_origin(origin)
        except OriginNotAllowedError as exc:  # a malformed entry: the callers' ValueError
            raise ValueError(str(exc)) from None
        if not normal.startswith("https://"):
            raise ValueError(f"{origin!r}: portals must be https:// origins")
        if normal not in out:
            out.append(normal)
    return out


def _host(origin: str) -> str:
    host = origin.split("://", 1)[1]
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


def write(origins: Iterable[str], root: Path = Path("/")) -> list[Path]:
    """Allow ``origins`` (https) in Chromium, Chrome and Firefox; the files written.

    The Chromium/Chrome lists become exactly ``origins``; Firefox's ``SkipDomains`` gains
    their host names (entries others put there stay).
    """
    allowed = _origins(origins)
    written = []
    for relative in CHROMIUM_FILES:
        path = root / relative
        _write_json(path, {name: list(allowed) for name in CHROME_POLICIES})
        written.append(path)
    path = root / FIREFOX_FILE
    data = _read_json(path)
    lna = data.setdefault("policies", {}).setdefault("LocalNetworkAccess", {})
    skip = list(lna.get("SkipDomains", []))
    for host in map(_host, allowed):
        if host not in skip:
            skip.append(host)
    lna["SkipDomains"] = skip
    _write_json(path, data)
    written.append(path)
    return written


def remove(origins: Iterable[str] | None = None, root: Path = Path("/")) -> list[Path]:
    """Undo :func:`write`: our Chromium/Chrome files go; from Firefox's ``SkipDomains`` the
    hosts of ``origins`` go (all hosts our Chromium file listed when ``origins`` is None)."""
    changed = []
    known: list[str] = []
    for relative in CHROMIUM_FILES:
        path = root / relative
        if path.exists():
            known += _read_json(path).get(CHROME_POLICIES[0], [])
            path.unlink()
            changed.append(path)
    hosts = {_host(o) for o in (_origins(origins) if origins is not None else known)}
    path = root / FIREFOX_FILE
    data = _read_json(path)
    lna = data.get("policies", {}).get("LocalNetworkAccess")
    if isinstance(lna, dict) and "SkipDomains" in lna:
        lna["SkipDomains"] = [h for h in lna["SkipDomains"] if h not in hosts]
        if not lna["SkipDomains"]:
            del lna["SkipDomains"]
        if not lna:
            del data["policies"]["LocalNetworkAccess"]
        _write_json(path, data)
        changed.append(path)
    return changed


class Registry(Protocol):
    """HKLM, as far as the policy writer needs it."""

    def replace_list(self, key: str, values: list[str]) -> None:
        """Make ``key`` hold exactly REG_SZ values "1".."n" = ``values`` (other names kept)."""

    def delete_key(self, key: str) -> None: ...


def windows_lists(origins: Iterable[str]) -> dict[str, list[str]]:
    """Registry key -> the numbered list to write there (https origins only)."""
    allowed: list[str] = []
    for origin in origins:
        try:
            allowed += _origins([origin])
        except ValueError:
            continue
    allowed = list(dict.fromkeys(allowed))
    return {f"{root}\\{policy}": allowed for root in WINDOWS_KEYS for policy in CHROME_POLICIES}


def write_windows(origins: Iterable[str], registry: Registry | None = None) -> list[str]:
    """Write Chrome's and Edge's lists (or remove them when no https origin is left)."""
    registry = registry or _WinRegistry()
    keys = []
    for key, values in windows_lists(origins).items():
        if values:
            registry.replace_list(key, values)
        else:
            registry.delete_key(key)
        keys.append(key)
    return keys


def remove_windows(registry: Registry | None = None) -> list[str]:
    registry = registry or _WinRegistry()
    keys = list(windows_lists([]))
    for key in keys:
        registry.delete_key(key)
    return keys


class _WinRegistry:  # pragma: no cover - Windows only
    """HKLM through winreg, 64-bit view (the browsers read that one)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")

    def replace_list(self, key: str, values: list[str]) -> None:
        import winreg

        access = winreg.KEY_ALL_ACCESS | winreg.KEY_WOW64_64KEY  # type: ignore[attr-defined]
        hklm = winreg.HKEY_LOCAL_MACHINE  # type: ignore[attr-defined]
        with winreg.CreateKeyEx(hklm, key, 0, access) as handle:  # type: ignore[attr-defined]
            index = 1
            while True:  # drop the numbered values of an earlier list
                try:
                    winreg.DeleteValue(handle, str(index))  # type: ignore[attr-defined]
                except OSError:
                    break
                index += 1
            for number, value in enumerate(values, 1):
                winreg.SetValueEx(handle, str(number), 0, winreg.REG_SZ, value)  # type: ignore[attr-defined]

    def delete_key(self, key: str) -> None:
        import winreg

        try:
            winreg.DeleteKeyEx(  # type: ignore[attr-defined]
                winreg.HKEY_LOCAL_MACHINE, key, winreg.KEY_WOW64_64KEY, 0  # type: ignore[attr-defined]
            )
        except OSError:
            pass
