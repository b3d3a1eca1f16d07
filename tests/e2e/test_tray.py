"""The tray: menu model from a fake AgentControl, tooltips, icons, notices, the headless
provider choice, and one real pystray run per language under Xvfb + trayer (gtk backend)
with a screenshot of the open menu."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageGrab

from agent.core.control import AgentState, Notice, Snapshot
from agent.core.interaction import ConsentKind, ConsentRequest
from agent.errors import NotSupportedError
from tests.tray_fakes import READY, VIRTUAL_READER, FakeAutostart, FakeControl
from tray import headless
from tray.i18n import LANGUAGES, translator
from tray.icon import MenuEntry, TrayApp, draw_icon, notice_text, tooltip

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"


def find(entries: tuple[MenuEntry, ...], text: str) -> MenuEntry:
    for entry in entries:
        if entry.text == text:
            return entry
    raise AssertionError(f"no menu entry {text!r} in {[e.text for e in entries]}")


def submenu(entries: tuple[MenuEntry, ...], text: str) -> tuple[MenuEntry, ...]:
    sub = find(entries, text).submenu
    assert sub is not None
    return sub


# --- menu model ----------------------------------------------------------------------------


def test_menu_lists_the_virtual_card_sites_and_actions() -> None:
    control = FakeControl()
    autostart = FakeAutostart(enabled=False)
    app = TrayApp(control, autostart, lang="en")
    menu = app.menu_entries()
    assert menu[0].text == "Card ready: Alice (Belgian eID)" and not menu[0].enabled
    readers = [e.text for e in submenu(menu, "Readers and cards")]
    assert readers == [
        f"{VIRTUAL_READER}: Belgian eID - Alice Specimen",
        "Virtual PCD 00 01 [PIN pad]: no card",
    ]
    assert [e.text for e in submenu(menu, "Sites connected now")] == ["https://portal.example.be"]

    allowed = submenu(menu, "Allowed sites")
    revoke = find(allowed, "Revoke https://tax.example.be")
    assert revoke.action is not None
    revoke.action()
    assert control.revoked == ["https://tax.example.be"]
    policy = find(allowed, "https://intranet.example.org (allowed by your organisation)")
    assert policy.action is None and not policy.enabled

    toggle = find(menu, "Start at login")
    assert toggle.checked is False and toggle.action is not None
    toggle.action()
    assert autostart.enabled and find(app.menu_entries(), "Start at login").checked is True

    about = [e.text for e in submenu(menu, "About eid-agent")]
    assert about == ["Version 0.1.0", "Listening on port 24847"]

    quit_ = find(menu, "Quit")
    assert quit_.action is not None
    quit_.action()
    assert control.shutdowns == 1


def test_menu_without_autostart_and_empty_lists() -> None:
    control = FakeControl(Snapshot(state=AgentState.NO_READER, version="0.1.0"))
    menu = TrayApp(control, None, lang="en").menu_entries()
    assert all(e.text != "Start at login" for e in menu)
    assert [e.text for e in submenu(menu, "Readers and cards")] == ["No card reader"]
    assert [e.text for e in submenu(menu, "Allowed sites")] == ["None"]


def test_menu_is_translated() -> None:
    menu = TrayApp(FakeControl(), FakeAutostart(), lang="nl").menu_entries()
    texts = [e.text for e in menu]
    assert "Lezers en kaarten" in texts and "Afsluiten" in texts
    assert menu[0].text == "Kaart klaar: Alice (Belgian eID)"
    readers = submenu(menu, "Lezers en kaarten")
    assert readers[1].text == "Virtual PCD 00 01 [pinpad]: geen kaart"


def test_pystray_menu_is_built_from_the_model() -> None:
    """The real pystray classes (importable without a display via the dummy backend)."""
    env = {**os.environ, "PYSTRAY_BACKEND": "dummy"}
    script = (
        "import pystray\n"
        "from tests.tray_fakes import FakeControl\n"
        "from tray.icon import TrayApp, to_pystray\n"
        "app = TrayApp(FakeControl(), None, lang='en')\n"
        "menu = to_pystray(app.menu_entries(), pystray)\n"
        "items = list(menu.items)\n"
        "readers = [i for i in items if i.text == 'Readers and cards'][0]\n"
        "print([i.text for i in readers.submenu.items])\n"
        "print([i.text for i in items if not i.enabled])\n"
    )
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", script], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout.splitlines()
    assert VIRTUAL_READER in out[0] and "Alice Specimen" in out[0]
    assert "Card ready: Alice (Belgian eID)" in out[1]


@pytest.mark.parametrize(
    "snapshot, expected",
    [
        (Snapshot(AgentState.NO_READER), "eid-agent: No card reader"),
        (Snapshot(AgentState.NO_CARD), "eid-agent: Insert your ID card"),
        (READY, "eid-agent: Card ready: Alice (Belgian eID)"),
        (Snapshot(AgentState.BUSY), "eid-agent: Busy: using your ID card"),
        (Snapshot(AgentState.ERROR, error="pcscd is not running"),
         "eid-agent: Error: pcscd is not running"),
    ],
)
def test_tooltip_per_state(snapshot: Snapshot, expected: str) -> None:
    assert tooltip(snapshot, translator("en")) == expected


def test_tooltip_fits_windows_limit() -> None:
    text = tooltip(Snapshot(AgentState.ERROR, error="x" * 300), translator("en"))
    assert len(text) <= 127


def test_each_state_has_its_own_icon() -> None:
    encoded = set()
    for image in (draw_icon(state) for state in AgentState):
        assert image.size == (64, 64) and image.mode == "RGBA"
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        encoded.add(buffer.getvalue())
    assert len(encoded) == len(AgentState)
    assert draw_icon(AgentState.READY, 16).size == (16, 16)


def test_notices_are_worded() -> None:
    tr = translator("de")
    assert notice_text(Notice.CARD_INSERTED, VIRTUAL_READER, tr) == ("Ausweis eingesteckt",
                                                                      VIRTUAL_READER)
    title, message = notice_text(Notice.PIN_BLOCKED, "PIN", tr)
    assert title == "PIN gesperrt" and "PUK" in message


def test_refresh_and_notify_reach_the_icon() -> None:
    class Icon:
        HAS_NOTIFICATION = True

        def __init__(self) -> None:
            self.notes: list[tuple[str, str]] = []
            self.menus = 0

        def notify(self, message: str, title: str) -> None:
            self.notes.append((title, message))

        def update_menu(self) -> None:
            self.menus += 1

    import types

    fake_pystray = types.SimpleNamespace(
        Menu=type("Menu", (), {"SEPARATOR": None, "__init__": lambda self, *i: None}),
        MenuItem=lambda *a, **k: None,
    )
    control = FakeControl()
    app = TrayApp(control, None, lang="en")
    icon = Icon()
    app._icon, app._pystray = icon, fake_pystray
    control.subscribe(app._refresh, app._notify)
    control.push(replace(READY, state=AgentState.BUSY))
    assert icon.title == "eid-agent: Busy: using your ID card"  # type: ignore[attr-defined]
    assert icon.menus == 1
    control.notice(Notice.CARD_REMOVED, VIRTUAL_READER)
    assert icon.notes == [("Card removed", VIRTUAL_READER)]


# --- headless --------------------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_provider_choice() -> None:
    from agent.app.console import ConsoleInteraction
    from tray.interaction import DialogInteraction

    shown = headless.choose_interaction(env={"DISPLAY": ":0"}, stdin=io.StringIO())
    assert isinstance(shown, DialogInteraction) == headless.dialogs_available()
    assert isinstance(headless.choose_interaction(env={}, stdin=FakeTty()), ConsoleInteraction)
    assert isinstance(headless.choose_interaction(env={}, stdin=io.StringIO()),
                      headless.NoUserInterface)
    assert not headless.has_display({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert headless.has_display({}, "win32")


def test_no_user_interface_fails_clearly() -> None:
    async def scenario() -> None:
        ui = headless.NoUserInterface()
        with pytest.raises(NotSupportedError, match="PIN-pad reader"):
            await ui.ask_consent(ConsentRequest("https://a.example", ConsentKind.SITE))

    asyncio.run(scenario())


# --- a real tray under Xvfb -------------------------------------------------------------------

TRAY_WIDTH, TRAY_HEIGHT = 200, 32
SCREEN = (1024, 600)

needs_x = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("Xvfb", "trayer", "xdotool", "dbus-run-session")),
    reason="needs Xvfb, trayer, xdotool and dbus",
)


@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        display = ":" + ready.readline().strip()
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width",
         str(TRAY_WIDTH), "--height", str(TRAY_HEIGHT), "--SetDockType", "true"],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: subprocess.run(
            ["xdotool", "search", "--class", "trayer"], env={**os.environ, "DISPLAY": display},
            capture_output=True, check=False, timeout=30).returncode == 0, "trayer")
        time.sleep(1.0)
        yield display
    finally:
        trayer.terminate()
        trayer.wait(10)
        xvfb.terminate()
        xvfb.wait(10)


def grab(display: str) -> Image.Image:
    return ImageGrab.grab(xdisplay=display).convert("RGB")


def wait_for(check, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@needs_x
@pytest.mark.parametrize("lang", LANGUAGES)
def test_real_tray_menu_under_xvfb(x_display: str, tmp_path: Path, lang: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env.update(DISPLAY=x_display, PYSTRAY_BACKEND="gtk", HOME=str(tmp_path),
               XDG_RUNTIME_DIR=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               NO_AT_BRIDGE="1")
    icon_box = (SCREEN[0] - TRAY_HEIGHT, 0, SCREEN[0], TRAY_HEIGHT)
    menu_box = (SCREEN[0] - 420, TRAY_HEIGHT, SCREEN[0], 320)
    before = grab(x_display)
    log = tmp_path / "tray.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            ["dbus-run-session", "--", str(ROOT / ".venv/bin/python"), "-m", "tests.tray_fakes",
             lang],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            text=True,
        )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "running"
        wait_for(lambda: ImageChops.difference(grab(x_display).crop(icon_box),
                                               before.crop(icon_box)).getbbox() is not None,
                 "the icon in the tray")
        time.sleep(1.0)  # the icon shows before its menu handler is ready
        x, y = SCREEN[0] - TRAY_HEIGHT // 2, TRAY_HEIGHT // 2
        xdotool = ["xdotool", "mousemove", str(x), str(y), "click", "3"]
        subprocess.run(xdotool, env=env, check=True, timeout=30)
        wait_for(lambda: ImageChops.difference(grab(x_display).crop(menu_box),
                                               before.crop(menu_box)).getbbox() is not None,
                 "the tray menu")
        time.sleep(0.5)  # let it finish painting
        folder = ARTIFACTS / lang
        folder.mkdir(parents=True, exist_ok=True)
        shot = grab(x_display).crop((SCREEN[0] - 420, 0, SCREEN[0], 320))
        shot.save(folder / "tray-menu.png")
        if lang == "en" and os.environ.get("EID_UPDATE_DOCS_SCREENSHOTS"):
            DOCS.mkdir(parents=True, exist_ok=True)
            shot.save(DOCS / "tray-menu.png")
        # keyboard into the menu: first enabled line ("Readers and cards"), open its submenu
        subprocess.run(["xdotool", "key", "--delay", "300", "Down", "Right"], env=env,
                       check=True, timeout=30)
        time.sleep(1.0)
        readers = grab(x_display).crop((SCREEN[0] - 720, 0, SCREEN[0], 320))
        assert ImageChops.difference(readers.crop((0, 0, 300, 320)),
                                     before.crop((SCREEN[0] - 720, 0, SCREEN[0] - 420, 320))
                                     ).getbbox() is not None, "the submenu did not open"
        readers.save(folder / "tray-menu-readers.png")
        if lang == "en" and os.environ.get("EID_UPDATE_DOCS_SCREENSHOTS"):
            readers.save(DOCS / "tray-menu-readers.png")
        subprocess.run(["xdotool", "key", "Escape", "Escape"], env=env, check=True, timeout=30)
        proc.stdin.write("remove\n")  # a state change through subscribe while running
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "removed"
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "stopped"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text.split("the tray backend failed while closing")[0]
