"""Autostart on Linux: systemd user unit + XDG autostart entry, in a temporary HOME."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.app import autostart
from agent.app import packaging as cli_packaging

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux autostart; the installers own it elsewhere"
)

@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    # No user manager to reload: keep systemctl away from the machine's own one.
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return home


def parse_desktop_exec(value: str) -> list[str]:
    """Split an Exec value as the Desktop Entry Specification says (string unescape, quotes)."""
    unescaped = value.replace("\\\\", "\x00").replace("%%", "%").replace("\x00", "\\")
    words: list[str] = []
    word, quoted, i, started = "", False, 0, False
    while i < len(unescaped):
        c = unescaped[i]
        if quoted:
            if c == "\\" and i + 1 < len(unescaped) and unescaped[i + 1] in '"`$\\':
                word += unescaped[i + 1]
                i += 1
            elif c == '"':
                quoted = False
            else:
                word += c
        elif c == '"':
            quoted = started = True
        elif c == " ":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word += c
            started = True
        i += 1
    assert not quoted, "unterminated quote"
    if started:
        words.append(word)
    return words


def desktop_key(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{key} missing")


def test_install_writes_unit_and_desktop_entry(home: Path) -> None:
    result = autostart.install()

    unit = home / ".config/systemd/user/eid-agent.service"
    desktop = home / ".config/autostart/eid-agent.desktop"
    wants = home / ".config/systemd/user/graphical-session.target.wants/eid-agent.service"
    assert result.supported and result.changed
    assert result.paths == (unit, desktop)
    assert wants.is_symlink() and wants.resolve() == unit

    unit_text = unit.read_text()
    assert f"ExecStart={sys.executable} -m agent serve\n" in unit_text
    root = Path(autostart.__file__).resolve().parents[2]
    assert f'Environment="PYTHONPATH={root}"\n' in unit_text
    assert "WantedBy=graphical-session.target" in unit_text
    assert "Restart=on-failure" in unit_text

    text = desktop.read_text()
    assert text.startswith("[Desktop Entry]\n")
    assert desktop_key(text, "Type") == "Application"
    assert desktop_key(text, "X-systemd-skip") == "true"
    assert parse_desktop_exec(desktop_key(text, "Exec")) == [
        "env", f"PYTHONPATH={root}", sys.executable, "-m", "agent", "serve",
    ]
    assert autostart.is_enabled() and cli_packaging.is_enabled()


def test_install_is_idempotent_and_uninstall_removes_everything(home: Path) -> None:
    first = autostart.install()
    contents = [p.read_text() for p in first.paths]
    second = autostart.install()
    assert not second.changed
    assert [p.read_text() for p in second.paths] == contents

    removed = autostart.uninstall()
    assert removed.changed and len(removed.paths) == 3
    assert not any(p.exists() or p.is_symlink() for p in removed.paths)
    assert not autostart.is_enabled()
    again = autostart.uninstall()
    assert not again.changed and again.paths == ()


def test_install_repairs_a_stale_entry(home: Path) -> None:
    autostart.install(["/opt/old/eid-agent", "serve"])
    result = autostart.install(["/opt/new/eid-agent", "serve"])
    assert result.changed
    unit = autostart.systemd_unit_path().read_text()
    assert "ExecStart=/opt/new/eid-agent serve\n" in unit and "/opt/old" not in unit
    # An explicit command needs no PYTHONPATH.
    assert "Environment=" not in unit


def test_xdg_config_home_is_honoured(home: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cfg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    autostart.install()
    assert (config / "systemd/user/eid-agent.service").is_file()
    assert (config / "autostart/eid-agent.desktop").is_file()
    assert not (home / ".config").exists()
    # A relative XDG_CONFIG_HOME is invalid (XDG Base Directory spec): fall back to ~/.config.
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    assert autostart.desktop_entry_path() == home / ".config/autostart/eid-agent.desktop"


WEIRD = "/opt/my apps/eid $agent%1 \"q\""


def test_awkward_paths_are_quoted_for_the_desktop_entry(home: Path) -> None:
    autostart.install([WEIRD, "serve", "--interaction=dialogs"])
    text = autostart.desktop_entry_path().read_text()
    assert parse_desktop_exec(desktop_key(text, "Exec")) == [
        WEIRD, "serve", "--interaction=dialogs",
    ]
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate (desktop-file-utils) is not installed")
    done = subprocess.run([validator, str(autostart.desktop_entry_path())],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout.lower()


def test_systemd_accepts_the_unit(home: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = tmp_path / "my apps" / "eid $agent%1"
    program.parent.mkdir()
    shutil.copy("/bin/true", program)
    autostart.install([str(program), "serve", "--log-level=$HOME"])
    unit = autostart.systemd_unit_path()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run([analyze, "--user", "verify", str(unit)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # A program that does not exist is reported: the check above is a real one.
    program.unlink()
    done = subprocess.run([analyze, "--user", "verify", str(unit)],
                          capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "not executable" in done.stderr


def test_the_installed_command_runs_from_anywhere(home: Path, tmp_path: Path) -> None:
    autostart.install()
    words = parse_desktop_exec(desktop_key(autostart.desktop_entry_path().read_text(), "Exec"))
    assert words[-1] == "serve"
    done = subprocess.run([*words[:-1], "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("eid-agent ")


def test_other_systems_are_left_to_the_installer(home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for platform, name in (("win32", "Windows"), ("darwin", "macOS")):
        monkeypatch.setattr(sys, "platform", platform)
        result = autostart.install()
        assert not result.supported and not result.changed
        assert name in result.message and "installer" in result.message
        assert not autostart.uninstall().supported
    # (status() on "win32" reads the registry, which only Windows has.)
    assert not autostart.status().can_change
    assert not (home / ".config").exists()


def test_cli_subcommands(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli_packaging.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["install-autostart"])
    assert args.func(args) == 0
    assert "start at login" in capsys.readouterr().out
    assert autostart.desktop_entry_path().is_file()
    args = parser.parse_args(["uninstall-autostart"])
    assert args.func(args) == 0
    assert not autostart.desktop_entry_path().exists()
    assert "no longer" in capsys.readouterr().out
