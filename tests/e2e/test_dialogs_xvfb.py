"""The real dialog process on a real X server (Xvfb, started here), driven with xdotool.

The dialog process is started through DialogInteraction, exactly as the agent does. Digits
typed with xdotool must reach the caller; Escape cancels; a cancelled coroutine closes the
window; the PIN never shows up in the dialog process's log. Screenshots of every dialog in
every language go to artifacts/screenshots/<lang>/ (set EID_UPDATE_DOCS_SCREENSHOTS=1 to
also refresh the English ones under docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageGrab

from agent.cards.base import PinInfo
from agent.core.interaction import (
    CardChoice,
    CardWaitReason,
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentKind,
    ConsentRequest,
    Operation,
    PinRequest,
)
from agent.errors import UserCancelledError
from tray.dialogs.widgets import INPUT_DELAY_MS
from tray.i18n import LANGUAGES
from tray.interaction import DialogInteraction

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
ORIGIN = "https://portal.example.be"
PIN = "97531864"  # distinctive: must never appear in a log

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="needs Xvfb and xdotool"
)


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb on a free display number (Xvfb picks it: -displayfd)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def xdotool(display: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"xdotool {args} failed: {result.stderr}")
    return result.stdout


async def visible_window(display: str, ui: DialogInteraction, present: bool = True) -> str:
    """The dialog's window id once shown (or "" once gone when present=False)."""
    for _ in range(300):
        pid = ui.pid
        out = ""
        if pid is not None:
            out = await asyncio.to_thread(
                xdotool, display, "search", "--onlyvisible", "--pid", str(pid), check=False
            )
        windows = out.split()
        if present and windows:
            await asyncio.sleep(0.3)  # let it paint and take focus
            return windows[-1]
        if not present and not windows:
            return ""
        await asyncio.sleep(0.1)
    raise AssertionError("dialog window " + ("never appeared" if present else "never closed"))


async def type_into(display: str, window: str, *keys: str, text: str | None = None) -> None:
    await asyncio.to_thread(xdotool, display, "windowfocus", "--sync", window)
    if text:
        await asyncio.to_thread(xdotool, display, "type", "--delay", "40", text)
    if keys:
        await asyncio.to_thread(xdotool, display, "key", "--delay", "60", *keys)


async def past_input_delay(display: str, window: str) -> None:
    """Focus the window and wait until a consent dialog takes input again."""
    await asyncio.to_thread(xdotool, display, "windowfocus", "--sync", window)
    await asyncio.sleep(INPUT_DELAY_MS / 1000 + 0.5)


def consent_calls(ui: DialogInteraction) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "consent-site": lambda: ui.ask_consent(ConsentRequest(ORIGIN, ConsentKind.SITE)),
        "consent-identity": lambda: ui.ask_consent(
            ConsentRequest(ORIGIN, ConsentKind.IDENTITY, holder="Alice Specimen")
        ),
        "consent-certificate": lambda: ui.ask_consent(
            ConsentRequest(ORIGIN, ConsentKind.CERTIFICATE, holder="Alice Specimen",
                           subject_id="85073003328")
        ),
    }


def screenshot(display: str, window: str, lang: str, name: str) -> Path:
    geometry: dict[str, int] = {}
    for line in xdotool(display, "getwindowgeometry", "--shell", window).splitlines():
        key, _, value = line.partition("=")
        if key in ("X", "Y", "WIDTH", "HEIGHT"):
            geometry[key] = int(value)
    box = (geometry["X"], geometry["Y"], geometry["X"] + geometry["WIDTH"],
           geometry["Y"] + geometry["HEIGHT"])
    image = ImageGrab.grab(bbox=box, xdisplay=display)
    folder = ARTIFACTS / lang
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    image.save(path)
    if lang == "en" and os.environ.get("EID_UPDATE_DOCS_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def pin_request(tries: int = 3, operation: Operation = Operation.AUTHENTICATE) -> PinRequest:
    return PinRequest(
        origin=ORIGIN,
        operation=operation,
        pin=PinInfo(reference=1, name="PIN"),
        tries_left=tries,
        card_type="Belgian eID",
        reader="Virtual PCD 00 00",
        holder="Alice Specimen",
        detail="contract-2024.pdf" if operation is Operation.SIGN else None,
    )


class Session:
    def __init__(self, display: str, tmp_path: Path, lang: str = "en") -> None:
        self.display = display
        self.log = tmp_path / f"dialogs-{lang}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",)}
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(tmp_path),
                   XDG_RUNTIME_DIR=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
        self.ui = DialogInteraction(env=env, stderr_path=self.log, lang=lang)

    async def open(self, call: Awaitable[Any]) -> tuple[asyncio.Task[Any], str]:
        task = asyncio.ensure_future(call)
        window = await visible_window(self.display, self.ui)
        return task, window


def run(display: str, tmp_path: Path, body: Callable[[Session], Awaitable[None]],
        lang: str = "en") -> None:
    async def scenario() -> None:
        s = Session(display, tmp_path, lang)
        try:
            await body(s)
        finally:
            await s.ui.aclose()

    asyncio.run(scenario())


def test_typed_pin_reaches_the_caller_and_no_log(display: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def body(s: Session) -> None:
        task, window = await s.open(s.ui.ask_pin(pin_request(tries=2)))
        await type_into(s.display, window, text=PIN)
        screenshot(s.display, window, "en", "pin-typed")
        await type_into(s.display, window, "Return")
        assert await asyncio.wait_for(task, 30) == PIN

    run(display, tmp_path, body)
    log = (tmp_path / "dialogs-en.log").read_text()
    assert "pin dialog opened" in log and "1: ok" in log
    assert PIN not in log
    assert PIN not in caplog.text


def test_stray_enter_on_the_pin_dialog_sends_nothing(display: str, tmp_path: Path) -> None:
    """The PIN dialog is no consent (no input delay), but Enter on an empty or short PIN
    sends nothing; once the PIN is typed, Enter sends it."""
    async def body(s: Session) -> None:
        task, window = await s.open(s.ui.ask_pin(pin_request()))
        await type_into(s.display, window, "Return", "KP_Enter", "space", "Return")
        await type_into(s.display, window, "Return", text="12")  # too short
        await asyncio.sleep(0.3)
        assert not task.done()
        await type_into(s.display, window, "BackSpace", "BackSpace")
        await type_into(s.display, window, "Return", text=PIN)
        assert await asyncio.wait_for(task, 30) == PIN

    run(display, tmp_path, body)


def test_escape_cancels(display: str, tmp_path: Path) -> None:
    async def body(s: Session) -> None:
        task, window = await s.open(s.ui.ask_pin(pin_request()))
        await type_into(s.display, window, "1", "2", "Escape")
        with pytest.raises(UserCancelledError):
            await asyncio.wait_for(task, 30)
        await visible_window(s.display, s.ui, present=False)

    run(display, tmp_path, body)


def test_cancelled_coroutine_closes_the_dialog(display: str, tmp_path: Path) -> None:
    async def body(s: Session) -> None:
        task, window = await s.open(s.ui.ask_pin(pin_request()))
        task.cancel()  # what the core does on its timeout or when the page goes away
        with pytest.raises(asyncio.CancelledError):
            await task
        await visible_window(s.display, s.ui, present=False)
        assert s.ui.running  # the process stays for the next question

    run(display, tmp_path, body)
    assert "cancel (open)" in (tmp_path / "dialogs-en.log").read_text()


STRAY = ("Return", "space", "KP_Enter", "Escape", "Tab", "Return", "space")


@pytest.mark.parametrize("kind", ["consent-site", "consent-identity", "consent-certificate"])
def test_stray_keys_on_a_consent_approve_nothing(display: str, tmp_path: Path,
                                                 kind: str) -> None:
    """Keys typed into a consent dialog the moment it appears (a user typing elsewhere) are
    ignored; after the delay, Tab + Space still chooses "allow once" deliberately."""
    async def body(s: Session) -> None:
        task, window = await s.open(consent_calls(s.ui)[kind]())
        await type_into(s.display, window, *STRAY)
        await asyncio.sleep(0.3)
        assert not task.done()  # no approval, no denial, no cancel
        await past_input_delay(s.display, window)
        await type_into(s.display, window, "Tab", "space")
        assert await asyncio.wait_for(task, 30) is ConsentDecision.ALLOW_ONCE

    run(display, tmp_path, body)
    log = (tmp_path / "dialogs-en.log").read_text()
    assert log.count(": ok") == 1


def test_site_consent_enter_after_the_delay_denies(display: str, tmp_path: Path) -> None:
    async def body(s: Session) -> None:
        task, window = await s.open(consent_calls(s.ui)["consent-site"]())
        await past_input_delay(s.display, window)
        await type_into(s.display, window, "Return")  # the focus is on Deny
        assert await asyncio.wait_for(task, 30) is ConsentDecision.DENY

    run(display, tmp_path, body)


def test_site_consent_with_the_keyboard(display: str, tmp_path: Path) -> None:
    async def body(s: Session) -> None:
        task, window = await s.open(consent_calls(s.ui)["consent-site"]())
        await past_input_delay(s.display, window)
        await type_into(s.display, window, "Tab", "Tab", "Return")
        assert await asyncio.wait_for(task, 30) is ConsentDecision.ALLOW_ALWAYS

    run(display, tmp_path, body)


def test_pin_change_typed(display: str, tmp_path: Path) -> None:
    async def body(s: Session) -> None:
        call = s.ui.ask_pin_change(pin_request(operation=Operation.CHANGE_PIN))
        task, window = await s.open(call)
        await type_into(s.display, window, "Tab", text="1234")  # current, then to "new"
        await type_into(s.display, window, "Tab", text="5678")  # new, then to "repeat"
        await type_into(s.display, window, "Return", text="5678")
        assert await asyncio.wait_for(task, 30) == ("1234", "5678")

    run(display, tmp_path, body)


def dialog_calls(ui: DialogInteraction) -> dict[str, Callable[[], Awaitable[Any]]]:
    choices = (
        CardChoice("Virtual PCD 00 00", "Belgian eID", "Alice Specimen", "590000000001"),
        CardChoice("Virtual PCD 00 01", "Estonian ID", "Mari-Liis Männik", "AB0000001"),
    )

    async def pinpad() -> None:
        async with ui.pinpad_notice(pin_request()):
            await asyncio.sleep(3600)

    async def card_wait() -> None:
        request = CardWaitRequest(ORIGIN, Operation.AUTHENTICATE, CardWaitReason.NO_CARD)
        async with ui.card_notice(request):
            await asyncio.sleep(3600)

    return {
        "card-wait": card_wait,
        "pin": lambda: ui.ask_pin(pin_request(tries=3)),
        "pin-last-try": lambda: ui.ask_pin(pin_request(tries=1, operation=Operation.SIGN)),
        "pin-change": lambda: ui.ask_pin_change(pin_request(operation=Operation.CHANGE_PIN)),
        "pinpad": pinpad,
        **consent_calls(ui),
        "choose-card": lambda: ui.choose_card(ChoiceRequest(ORIGIN, Operation.SIGN, choices)),
    }


@pytest.mark.parametrize("lang", LANGUAGES)
def test_screenshots_of_every_dialog(display: str, tmp_path: Path, lang: str) -> None:
    saved: list[Path] = []

    async def body(s: Session) -> None:
        for name, call in dialog_calls(s.ui).items():
            task, window = await s.open(call())
            if name.startswith("pin") and name != "pinpad":
                await type_into(s.display, window, text="1234")
            if name.startswith("consent-"):
                await past_input_delay(s.display, window)  # buttons enabled, Deny focused
            saved.append(screenshot(s.display, window, lang, name))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await visible_window(s.display, s.ui, present=False)

    run(display, tmp_path, body, lang)
    assert len(saved) == 9
    for path in saved:
        with Image.open(path) as image:
            assert image.width > 200 and image.height > 100
            assert len(image.convert("L").getcolors(256) or []) > 10  # not a blank rectangle
