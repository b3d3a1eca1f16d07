"""The MSI installed for real: Wine's ``msiexec`` runs it silently, ``wine reg query`` reads back.

test_msi.py reads the tables; this runs them. Debian's Wine (8.0) executes the stand-in MSI
that packaging/windows/build_msi.py builds with wixl, in a private WINEPREFIX (no display,
no network): AppSearch, the launch conditions, the component conditions, property expansion
into registry values, the deferred custom actions and their command lines, uninstall and a
major upgrade all run in Wine's Windows Installer.

The browser-policy lists need a program: the MSI runs the installed ``eid-agent.exe
write-browser-policy --windows-registry --origins "[ALLOWEDORIGINS]"``. The real one is the
frozen Python agent, which only a Windows build makes (.github/workflows/windows.yml), and a
text stand-in cannot run. So the payload's ``eid-agent.exe`` here is a real Windows console
program, tests/e2e/msi_standin/write_browser_policy.c, built with Debian's mingw-w64: it
answers only those two command lines and writes the registry values by the same rules as
agent/tls/browser_policy.py. (A Unix script as ``eid-agent.exe`` would run the Python writer
itself, but Wine then neither waits for it nor returns its exit code, and splits its command
line without Windows quoting: it would prove less about the MSI.) What this proves: the MSI's
wiring (the property reaches the deferred, elevated action with Windows quoting intact, the
action runs after InstallFiles, a failure would fail the install, the remover runs before
RemoveFiles) and the values in the registry, cross-checked against the Python writer's
``windows_lists`` for the same input. What it does not prove: the agent's own writer
(``_WinRegistry`` through winreg) in the frozen exe, Windows' own msiexec, real elevation
(Wine has no UAC), the WiX v5 build, or that Chrome/Edge read the values; the Windows
workflow covers the real build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "msi_standin" / "write_browser_policy.c"
BUILD = ROOT / "packaging" / "windows" / "build_msi.py"
MINGW = "x86_64-w64-mingw32-gcc"
POLICY_KEY = r"HKLM\SOFTWARE\Policies\eid-agent"
REMEMBER_KEY = r"HKLM\SOFTWARE\eid-agent\Install"
RUN_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
CHROME_HOST = r"HKLM\SOFTWARE\Google\Chrome\NativeMessagingHosts\eu.webeid"
FIREFOX_HOST = r"HKLM\SOFTWARE\Mozilla\NativeMessagingHosts\eu.webeid"
LIST_KEYS = [
    rf"HKLM\SOFTWARE\Policies\{browser}\{policy}"
    for browser in (r"Google\Chrome", r"Microsoft\Edge")
    for policy in ("LocalNetworkAccessAllowedForUrls", "LoopbackNetworkAllowedForUrls")
]
# Two portals, separated the two ways IT writes them, one with a port; plus a development
# origin (http on loopback), which the agent's policy allows but the browser lists skip.
ORIGINS = "https://portal.example;https://sign.example:8443 http://localhost:8000"
PORTALS = ["https://portal.example", "https://sign.example:8443"]
NOT_STARTED = "Application could not be started"
PROPERTIES = {
    "PORT": "25000",
    "LOGLEVEL": "DEBUG",
    "ALLOWUSERAPPROVAL": "0",
    "ALLOWEDORIGINS": ORIGINS,
    "WEBEID": "1",
}

pytestmark = pytest.mark.skipif(shutil.which("wine") is None,
                                reason="Debian's wine is needed (scripts/setup.sh installs it)")


class Wine:
    """One private, headless Wine prefix."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        self.env.update(WINEPREFIX=str(prefix), WINEDEBUG="-all",
                        # no Mono/Gecko installer dialogs at first start
                        WINEDLLOVERRIDES="mscoree,mshtml=")

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # Rarely (about 1 in 300 starts here, on a loaded machine) Wine's loader fails to start
        # the program at all and says so through start.exe; the program never ran, so it is
        # started again (at most twice more). Any other outcome is returned as it is.
        for _ in range(3):
            done = self._run_once(*args, timeout=timeout)
            if not done.stdout.startswith(NOT_STARTED):
                break
            print(f"wine did not start {args[0]}; again", file=sys.stderr)
        return done

    def _run_once(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: Wine's helper processes (services, explorer) outlive the command
        # and hold its output open, so reading a pipe to its end would wait for them.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(["wine", *args], env=self.env, stdout=out, stderr=err,
                                  timeout=timeout, cwd=self.prefix.parent).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    def boot(self) -> None:
        self.prefix.mkdir(parents=True)
        done = self.run("wineboot", "-i", timeout=300)
        assert done.returncode == 0, done.stderr
        # The new prefix is still being set up after wineboot returns (a command started
        # then fails with "ShellExecuteEx failed"): wait until Wine has ended completely.
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=300, check=True)
        # Then one wineserver for the whole module (otherwise every `wine reg` may start
        # Wine anew); it ends 30 s after its last client if the teardown never comes.
        subprocess.run(["wineserver", "-p30"], env=self.env, timeout=60, check=True)

    def stop(self) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env, timeout=60, check=False,
                       capture_output=True)

    def msiexec(self, *args: str) -> int:
        # msiexec returns when the installation (and its deferred actions) ended.
        return self.run("msiexec", *args).returncode

    def install(self, msi: Path, **props: str) -> None:
        args = [f"{name}={value}" for name, value in props.items()]
        code = self.msiexec("/i", self.windows(msi), "/qn", *args)
        assert code == 0, f"msiexec /i failed ({code})"

    def uninstall(self, msi: Path) -> None:
        code = self.msiexec("/x", self.windows(msi), "/qn")
        assert code == 0, f"msiexec /x failed ({code})"

    @staticmethod
    def windows(path: Path) -> str:
        return "Z:" + str(path.resolve()).replace("/", "\\")

    def unix(self, path: str) -> Path:
        assert path[1:3] == ":\\", path
        drive = self.prefix / "dosdevices" / path[:2].lower()
        return drive.joinpath(*path[3:].split("\\")).resolve()

    def values(self, key: str) -> dict[str, tuple[str, str]] | None:
        """name -> (type, data) of one key's values ("" for the default); None: no such key."""
        done = self.run("reg", "query", key)
        if done.returncode != 0:
            # Only this answer means "absent"; anything else (Wine failing) fails the test.
            assert "Unable to find the specified registry key" in done.stdout, done
            return None
        found: dict[str, tuple[str, str]] = {}
        for line in done.stdout.splitlines():
            if not line.startswith("    "):
                continue
            name, kind, *data = line.strip().split("    ")
            found["" if name == "(Default)" else name] = (kind, "    ".join(data))
        return found

    def expand(self, variable: str) -> Path:
        done = self.run("cmd", "/c", f"echo %{variable}%")
        return self.unix(done.stdout.strip())


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    box = Wine(tmp_path_factory.mktemp("wine") / "prefix")
    box.boot()
    yield box
    box.stop()
    shutil.rmtree(box.prefix, ignore_errors=True)  # ~700 MB; pytest keeps old tmp dirs


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in payload of test_msi.py, with a real Windows eid-agent.exe."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_msi import make_payload

    assert shutil.which(MINGW), f"{MINGW} is needed (Debian gcc-mingw-w64-x86-64-win32)"
    folder = make_payload(tmp_path_factory.mktemp("payload"))
    subprocess.run([MINGW, "-municode", "-O2", "-Wall", "-Werror", "-o",
                    str(folder / "eid-agent.exe"), str(STANDIN)], check=True)
    return folder


def build(payload: Path, output: Path, version: str) -> Path:
    done = subprocess.run([sys.executable, str(BUILD), "--payload", str(payload),
                           "--version", version, "-o", str(output)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def python_lists(origins: str) -> dict[str, list[str]]:
    """What the agent's own writer would put there (key -> list)."""
    from agent.tls.browser_policy import split_origins, windows_lists

    return {f"HKLM\\{key}": values for key, values in windows_lists(split_origins(origins)).items()}


def numbered(values: dict[str, tuple[str, str]] | None) -> list[str]:
    assert values is not None
    assert all(kind == "REG_SZ" for kind, _ in values.values())
    assert sorted(values, key=int) == [str(n) for n in range(1, len(values) + 1)]
    return [values[str(n)][1] for n in range(1, len(values) + 1)]


def assert_nothing_installed(wine: Wine) -> None:
    for key in (POLICY_KEY, REMEMBER_KEY, CHROME_HOST, FIREFOX_HOST, *LIST_KEYS):
        assert wine.values(key) is None, key
    assert "eid-agent" not in (wine.values(RUN_KEY) or {})
    assert not (wine.expand("ProgramFiles") / "eid-agent").exists()


def test_silent_install_writes_policy_and_uninstall_removes_it(
        wine: Wine, payload: Path, tmp_path: Path) -> None:
    msi = build(payload, tmp_path / "eid-agent.msi", "1.2.3")
    assert_nothing_installed(wine)
    # The launch conditions run: a bad value refuses the whole install (1603, exit 1603 & 255).
    for bad in ("PORT=99999", "ALLOWUSERAPPROVAL=2"):
        assert wine.msiexec("/i", wine.windows(msi), "/qn", bad) == 1603 & 0xFF, bad
        assert_nothing_installed(wine)
    wine.install(msi, **PROPERTIES)

    # The machine policy the agent reads, typed as docs/deploy.md says.
    assert wine.values(POLICY_KEY) == {
        "AllowedOrigins": ("REG_SZ", ORIGINS),
        "Port": ("REG_DWORD", "0x61a8"),  # 25000
        "AllowUserApproval": ("REG_DWORD", "0x0"),  # "0" is set, so written
        "LogLevel": ("REG_SZ", "DEBUG"),
    }
    assert wine.values(REMEMBER_KEY) == {
        "AllowedOrigins": ("REG_SZ", ORIGINS), "Port": ("REG_SZ", "25000"),
        "AllowUserApproval": ("REG_SZ", "0"), "LogLevel": ("REG_SZ", "DEBUG"),
    }

    # Files in Program Files (the 64-bit one), byte for byte.
    folder = wine.expand("ProgramFiles") / "eid-agent"
    from test_msi import PAYLOAD

    for rel, data in PAYLOAD.items():
        if rel != "eid-agent.exe":
            assert (folder / rel).read_bytes() == data, rel
    assert (folder / "eid-agent.exe").read_bytes() == (payload / "eid-agent.exe").read_bytes()

    # Autostart for every user.
    kind, command = (wine.values(RUN_KEY) or {})["eid-agent"]
    assert kind == "REG_SZ"
    assert command.endswith('\\eid-agentw.exe" serve') and command.startswith('"C:\\')
    assert wine.unix(command[1:command.index('"', 1)]) == (folder / "eid-agentw.exe").resolve()

    # The Web eID host for Chrome (Edge reads Chrome's key) and Firefox: the manifests exist.
    for key, name in ((CHROME_HOST, "eu.webeid.json"), (FIREFOX_HOST, "eu.webeid.firefox.json")):
        kind, path = (wine.values(key) or {})[""]
        assert kind == "REG_SZ" and wine.unix(path) == (folder / name).resolve()
        manifest = json.loads(wine.unix(path).read_text())
        assert manifest["name"] == "eu.webeid"
        assert (folder / manifest["path"]).is_file()

    # Chrome's and Edge's Local Network Access lists: the deferred action ran the installed
    # eid-agent.exe with ALLOWEDORIGINS; the values agree with the agent's Python writer.
    expected = python_lists(ORIGINS)
    assert sorted(expected) == sorted(LIST_KEYS)
    for key in LIST_KEYS:
        assert numbered(wine.values(key)) == expected[key] == PORTALS, key

    # Each user's data, as the agent writes it: settings and logs stay after uninstall.
    settings = wine.expand("APPDATA") / "eid-agent" / "settings.json"
    log = wine.expand("LOCALAPPDATA") / "eid-agent" / "logs" / "eid-agent.log"
    for path in (settings, log):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("kept\n")

    wine.uninstall(msi)
    assert_nothing_installed(wine)
    assert settings.read_text() == log.read_text() == "kept\n"


def test_major_upgrade_without_properties_keeps_the_policy(
        wine: Wine, payload: Path, tmp_path: Path) -> None:
    older = build(payload, tmp_path / "older.msi", "1.2.3")
    newer = build(payload, tmp_path / "newer.msi", "1.2.4")
    assert_nothing_installed(wine)
    wine.install(older, **PROPERTIES)
    before = {key: wine.values(key) for key in (POLICY_KEY, *LIST_KEYS)}

    wine.install(newer)  # no properties: the remembered ones come back
    after = {key: wine.values(key) for key in (POLICY_KEY, *LIST_KEYS)}
    assert after == before
    assert numbered(after[LIST_KEYS[0]]) == PORTALS
    # Only the newer product is left: uninstalling it leaves nothing behind.
    wine.uninstall(newer)
    assert_nothing_installed(wine)


def test_standin_writes_what_the_python_writer_would(wine: Wine, payload: Path) -> None:
    """The stand-in's rules against the agent's, on awkward input (what the MSI passes on)."""
    awkward = ("HTTPS://Portal.Example https://portal.example:443,https://sign.example:8443;"
               "https://x.example/path http://localhost:8000 https://[::1]:9000 ftp://a.example "
               "https://user@a.example https://a.example?q https://a.example:0 "
               "https://a.example:99999 https://portal.example/ https://b.example:08443")
    expected = python_lists(awkward)
    assert expected[LIST_KEYS[0]] == ["https://portal.example", "https://sign.example:8443",
                                      "https://[::1]:9000", "https://b.example:8443"]
    exe = wine.windows(payload / "eid-agent.exe")
    done = wine.run(exe, "write-browser-policy", "--windows-registry", "--origins", awkward)
    assert done.returncode == 0, done
    try:
        for key in LIST_KEYS:
            assert numbered(wine.values(key)) == expected[key], key
    finally:
        done = wine.run(exe, "write-browser-policy", "--windows-registry", "--remove")
    assert done.returncode == 0, done
    assert all(wine.values(key) is None for key in LIST_KEYS)
