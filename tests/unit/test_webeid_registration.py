"""``eid-agent install-webeid-host`` / ``uninstall-webeid-host`` in a tmp HOME: the manifests in
each browser's per-user folder, an official Web eID registration left alone, replaced only
with ``--replace`` and restored by uninstall; and the channel paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.core.config import default_config_dir
from agent.webeid import paths, registration
from tests.webeid_support import ROOT

OFFICIAL = {
    "name": "eu.webeid", "description": "Web-eid native application", "path": "/usr/bin/web-eid",
    "type": "stdio",
    "allowed_origins": ["chrome-extension://gnmckgbandlkacikdndelhfghdejfido/",
                        "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/"],
}
TEST_ID = "abcdefghijklmnopabcdefghijklmnop"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "EID_AGENT_CONFIG_DIR": str(home / "cfg")}
    return subprocess.run([sys.executable, "-m", "agent", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _files(home: Path) -> dict[str, Path]:
    return {
        "chrome": home / ".config/google-chrome/NativeMessagingHosts/eu.webeid.json",
        "chromium": home / ".config/chromium/NativeMessagingHosts/eu.webeid.json",
        "edge": home / ".config/microsoft-edge/NativeMessagingHosts/eu.webeid.json",
        "firefox": home / ".mozilla/native-messaging-hosts/eu.webeid.json",
    }


def test_install_writes_every_browser_and_uninstall_removes_them(tmp_path: Path) -> None:
    result = _cli(tmp_path, "install-webeid-host", "--extension-id", TEST_ID)
    assert result.returncode == 0, result.stderr
    files = _files(tmp_path)
    for browser, path in files.items():
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["name"] == "eu.webeid" and data["type"] == "stdio"
        host = Path(data["path"])
        assert host.is_absolute() and host.exists() and host.stat().st_mode & 0o111
        if browser == "firefox":
            assert data["allowed_extensions"] == [registration.FIREFOX_ID]
        else:
            assert data["allowed_origins"] == [
                "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/",
                "chrome-extension://gnmckgbandlkacikdndelhfghdejfido/",
                f"chrome-extension://{TEST_ID}/",
            ]
        assert str(path) in result.stdout
    result = _cli(tmp_path, "uninstall-webeid-host")
    assert result.returncode == 0
    assert not any(p.exists() for p in files.values())


def test_the_registered_path_runs_the_host(tmp_path: Path) -> None:
    assert _cli(tmp_path, "install-webeid-host", "--browser", "chromium").returncode == 0
    data = json.loads(_files(tmp_path)["chromium"].read_text(encoding="utf-8"))
    proc = subprocess.run([data["path"], "chrome-extension://x/"], input=b"", capture_output=True,
                          env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}, timeout=30)
    assert proc.stdout[4:].startswith(b'{"version":"2.')


def test_an_official_registration_is_kept_unless_replace_and_restored_on_uninstall(tmp_path: Path) -> None:
    official = _files(tmp_path)["chromium"]
    official.parent.mkdir(parents=True)
    official.write_text(json.dumps(OFFICIAL), encoding="utf-8")
    before = official.read_bytes()

    result = _cli(tmp_path, "install-webeid-host", "--browser", "chromium")
    assert result.returncode == 1
    assert "another eu.webeid host is registered" in result.stdout and "/usr/bin/web-eid" in result.stdout
    assert official.read_bytes() == before

    result = _cli(tmp_path, "install-webeid-host", "--browser", "chromium", "--replace")
    assert result.returncode == 0, result.stdout
    assert json.loads(official.read_text())["description"] == registration.DESCRIPTION
    backup = official.with_name("eu.webeid.json.eid-agent-backup")
    assert backup.read_bytes() == before
    # Installing again (an upgrade) keeps the backup of the official file, not of ours.
    assert _cli(tmp_path, "install-webeid-host", "--browser", "chromium").returncode == 0
    assert backup.read_bytes() == before

    result = _cli(tmp_path, "uninstall-webeid-host", "--browser", "chromium")
    assert result.returncode == 0
    assert "restored" in result.stdout
    assert official.read_bytes() == before
    assert not backup.exists()


def test_uninstall_leaves_a_foreign_manifest_alone(tmp_path: Path) -> None:
    official = _files(tmp_path)["firefox"]
    official.parent.mkdir(parents=True)
    official.write_text(json.dumps(OFFICIAL), encoding="utf-8")
    result = _cli(tmp_path, "uninstall-webeid-host", "--browser", "firefox")
    assert "not ours" in result.stdout
    assert json.loads(official.read_text()) == OFFICIAL


def test_bad_extension_ids_are_refused(tmp_path: Path) -> None:
    result = _cli(tmp_path, "install-webeid-host", "--extension-id", "not an id")
    assert result.returncode == 2 and "not an extension ID" in result.stderr
    assert not any(p.exists() for p in _files(tmp_path).values())


def test_firefox_ids_go_to_the_firefox_manifest_only() -> None:
    ids = ("test@eid-agent.example", TEST_ID)
    assert registration.manifest("firefox", "/x", ids)["allowed_extensions"] == [
        registration.FIREFOX_ID, "test@eid-agent.example"]
    assert "chrome-extension://test@eid-agent.example/" not in registration.manifest(
        "chrome", "/x", ids)["allowed_origins"]


def test_system_locations_match_the_browsers() -> None:
    assert registration.locations("chrome", system=True, platform="linux") == [
        Path("/etc/opt/chrome/native-messaging-hosts/eu.webeid.json")]
    assert registration.locations("chromium", system=True, platform="linux") == [
        Path("/etc/chromium/native-messaging-hosts/eu.webeid.json")]
    assert registration.locations("edge", system=True, platform="linux") == [
        Path("/etc/opt/edge/native-messaging-hosts/eu.webeid.json")]
    assert registration.locations("firefox", system=True, platform="linux")[0] == Path(
        "/usr/lib/mozilla/native-messaging-hosts/eu.webeid.json")
    assert registration.locations("chrome", system=False, env={"HOME": "/h"}, platform="darwin") == [
        Path("/h/Library/Application Support/Google/Chrome/NativeMessagingHosts/eu.webeid.json")]


@pytest.mark.parametrize("env", [
    {"HOME": "/h"}, {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}, {"HOME": "/h", "EID_AGENT_CONFIG_DIR": "/c"},
    {"HOME": "/h", "APPDATA": "C:/Users/u/AppData/Roaming"},
])
@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_the_host_finds_the_same_settings_folder_as_the_agent(env, platform) -> None:
    assert paths.config_dir(env, platform) == default_config_dir(env, platform)


def test_agents_with_other_settings_folders_get_other_channels(tmp_path: Path) -> None:
    base = {"HOME": "/h", "XDG_RUNTIME_DIR": str(tmp_path)}
    default = paths.channel_path(None, base)
    assert default == str(tmp_path / "eid-agent" / "webeid.sock")
    assert paths.channel_path(Path("/h/.config/eid-agent"), base) == default
    one = paths.channel_path(None, base | {"EID_AGENT_CONFIG_DIR": "/a"})
    two = paths.channel_path(None, base | {"EID_AGENT_CONFIG_DIR": "/b"})
    assert len({default, one, two}) == 3
    assert paths.channel_path(Path("/a"), base) == one  # the agent's --config-dir, the host's env var


def test_a_foreign_or_open_channel_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "chan"
    paths.make_private_dir(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o775)
    with pytest.raises(paths.UnsafeChannelError):
        paths.make_private_dir(folder)
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(paths.UnsafeChannelError):
        paths.check_private_dir(link)
