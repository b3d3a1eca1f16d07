"""``eid-agent write-browser-policy``: the managed JSON for Chromium, Chrome and Firefox
(written under a scratch root through the real CLI), merged with a Firefox policy file IT
already has, and removed again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.tls import browser_policy


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "write-browser-policy", "--root", str(root), *args],
        capture_output=True, text=True, timeout=60,
    )


def test_writes_chromium_chrome_and_firefox_policies_and_removes_them(tmp_path: Path) -> None:
    firefox = tmp_path / "etc/firefox/policies/policies.json"
    firefox.parent.mkdir(parents=True)
    firefox.write_text(json.dumps({"policies": {
        "DisableTelemetry": True, "LocalNetworkAccess": {"SkipDomains": ["intranet.example"]},
    }}))
    out = _cli(tmp_path, "--origin", "https://Portal.Example", "--origin", "https://sign.example:8443")
    assert out.returncode == 0, out.stderr
    for relative in ("etc/chromium/policies/managed/eid-agent.json",
                     "etc/opt/chrome/policies/managed/eid-agent.json"):
        data = json.loads((tmp_path / relative).read_text())
        assert data == {
            "LocalNetworkAccessAllowedForUrls": ["https://portal.example", "https://sign.example:8443"],
            "LoopbackNetworkAllowedForUrls": ["https://portal.example", "https://sign.example:8443"],
        }
        if sys.platform != "win32":
            assert (tmp_path / relative).stat().st_mode & 0o777 == 0o644
    policies = json.loads(firefox.read_text())["policies"]
    assert policies["DisableTelemetry"] is True
    assert policies["LocalNetworkAccess"]["SkipDomains"] == [
        "intranet.example", "portal.example", "sign.example"
    ]

    out = _cli(tmp_path, "--remove")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "etc/chromium/policies/managed/eid-agent.json").exists()
    assert not (tmp_path / "etc/opt/chrome/policies/managed/eid-agent.json").exists()
    policies = json.loads(firefox.read_text())["policies"]
    assert policies == {"DisableTelemetry": True,
                        "LocalNetworkAccess": {"SkipDomains": ["intranet.example"]}}


def test_only_https_portals(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        browser_policy.write(["http://localhost:8080"], tmp_path)
    out = _cli(tmp_path, "--origin", "http://portal.example")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    out = _cli(tmp_path, "--origin", "https://portal.example/login")
    assert out.returncode == 2 and "not a valid origin" in out.stderr, out.stderr
    assert not (tmp_path / "etc").exists()


class DictRegistry:
    """HKLM as a dict of key -> {value name: REG_SZ}; same contract as the winreg one."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, str]] = {}

    def replace_list(self, key: str, values: list[str]) -> None:
        kept = {k: v for k, v in self.keys.get(key, {}).items() if not k.isdigit()}
        kept.update({str(n): v for n, v in enumerate(values, 1)})
        self.keys[key] = kept

    def delete_key(self, key: str) -> None:
        self.keys.pop(key, None)


def test_windows_lists_from_the_msi_property() -> None:
    registry = DictRegistry()
    registry.keys[r"SOFTWARE\Policies\Google\Chrome\LocalNetworkAccessAllowedForUrls"] = {
        "1": "https://old.example", "2": "https://older.example", "3": "https://oldest.example",
    }
    origins = browser_policy.split_origins(
        "https://portal.example;https://SIGN.example:8443 http://localhost:8080,https://portal.example"
    )
    keys = browser_policy.write_windows(origins, registry)
    assert sorted(keys) == sorted(registry.keys) == sorted([
        r"SOFTWARE\Policies\Google\Chrome\LocalNetworkAccessAllowedForUrls",
        r"SOFTWARE\Policies\Google\Chrome\LoopbackNetworkAllowedForUrls",
        r"SOFTWARE\Policies\Microsoft\Edge\LocalNetworkAccessAllowedForUrls",
        r"SOFTWARE\Policies\Microsoft\Edge\LoopbackNetworkAllowedForUrls",
    ])
    for values in registry.keys.values():
        # numbered from 1, https only, deduplicated, canonical; an older longer list is gone
        assert values == {"1": "https://portal.example", "2": "https://sign.example:8443"}

    # A malformed entry (a path, a bad port) is skipped like http, not a crash of the MSI's
    # custom action (that would fail the whole install with a traceback).
    assert browser_policy.windows_lists(
        ["https://portal.example/", "https://a.example:0", "https://ok.example"]
    )[r"SOFTWARE\Policies\Microsoft\Edge\LoopbackNetworkAllowedForUrls"] == ["https://ok.example"]

    browser_policy.write_windows(["http://localhost:8080"], registry)  # nothing https left
    assert registry.keys == {}
    browser_policy.write_windows(["https://portal.example"], registry)
    browser_policy.remove_windows(registry)
    assert registry.keys == {}
