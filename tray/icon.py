"""The tray icon: state picture and tooltip, a menu built from the core's snapshot, notices.

The tray sees the core only through :class:`agent.core.control.AgentControl`. The menu is first
built as plain :class:`MenuEntry` data (testable without a display), then turned into a
pystray menu. pystray is imported only in :meth:`TrayApp.run`, because importing it
needs a display on Linux. :meth:`TrayApp.run` blocks and must be called on the main thread.
"""

from __future__ import annotations

import gettext
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image, ImageDraw

from agent.core.control import AgentControl, AgentState, Notice, ReaderSummary, Snapshot
from tray.i18n import translator

logger = logging.getLogger(__name__)

APP_NAME = "eid-agent"
TOOLTIP_MAX = 127  # Windows truncates tray tooltips at 128 characters

__all__ = [
    "AutostartToggle",
    "MenuActions",
    "MenuEntry",
    "TrayApp",
    "build_menu",
    "draw_icon",
    "notice_text",
    "open_folder",
    "tooltip",
]


class AutostartToggle(Protocol):
    """Start-at-login switch (registry Run key on Windows, XDG autostart on Linux)."""

    def is_enabled(self) -> bool: ...

    def set_enabled(self, enabled: bool) -> None: ...


@dataclass(frozen=True)
class MenuEntry:
    """One tray menu line; ``submenu`` makes it a folder, ``separator`` a rule."""

    text: str = ""
    action: Callable[[], None] | None = None
    submenu: tuple[MenuEntry, ...] | None = None
    checked: bool | None = None
    enabled: bool = True
    separator: bool = False


SEPARATOR = MenuEntry(separator=True)


@dataclass(frozen=True)
class MenuActions:
    revoke: Callable[[str], None]
    open_log_folder: Callable[[], None]
    quit: Callable[[], None]
    toggle_autostart: Callable[[], None] | None = None


# --- pictures ------------------------------------------------------------------------

# Badge colour and symbol per state; the symbol keeps states apart without colour vision.
_BADGES: dict[AgentState, tuple[tuple[int, int, int], str]] = {
    AgentState.NO_READER: ((120, 120, 120), "slash"),
    AgentState.NO_CARD: ((224, 150, 0), "arrow"),
    AgentState.READY: ((0, 140, 60), "check"),
    AgentState.BUSY: ((20, 90, 200), "dots"),
    AgentState.ERROR: ((200, 30, 30), "cross"),
}


def draw_icon(state: AgentState, size: int = 64) -> Image.Image:
    """An ID card with a state badge (bottom right), drawn at ``size`` pixels."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 64
    card_fill = (245, 245, 245) if state is not AgentState.NO_READER else (200, 200, 200)
    draw.rounded_rectangle((2 * s, 10 * s, 58 * s, 48 * s), radius=6 * s, fill=card_fill,
                           outline=(40, 40, 40), width=max(1, round(2 * s)))
    draw.rounded_rectangle((8 * s, 20 * s, 20 * s, 30 * s), radius=2 * s, fill=(212, 175, 55))
    for y in (20, 27, 34):
        draw.line((26 * s, y * s, 50 * s, y * s), fill=(90, 90, 90), width=max(1, round(2 * s)))
    colour, symbol = _BADGES[state]
    box = (34 * s, 34 * s, 62 * s, 62 * s)
    draw.ellipse(box, fill=colour, outline=(255, 255, 255), width=max(1, round(2 * s)))
    white = (255, 255, 255)
    w = max(2, round(3 * s))
    if symbol == "check":
        draw.line((40 * s, 48 * s, 46 * s, 54 * s, 56 * s, 41 * s), fill=white, width=w)
    elif symbol == "cross":
        draw.line((41 * s, 41 * s, 55 * s, 55 * s), fill=white, width=w)
        draw.line((55 * s, 41 * s, 41 * s, 55 * s), fill=white, width=w)
    elif symbol == "slash":
        draw.line((40 * s, 56 * s, 56 * s, 40 * s), fill=white, width=w)
    elif symbol == "arrow":
        draw.line((48 * s, 39 * s, 48 * s, 55 * s), fill=white, width=w)
        draw.line((42 * s, 49 * s, 48 * s, 56 * s, 54 * s, 49 * s), fill=white, width=w)
    else:
        for x in (41, 48, 55):
            draw.ellipse((x * s - 2 * s, 46 * s, x * s + 2 * s, 50 * s), fill=white)
    return image


# --- words ---------------------------------------------------------------------------


def _ready_reader(snapshot: Snapshot) -> ReaderSummary | None:
    return next((r for r in snapshot.readers if r.card is not None), None)


def status_text(snapshot: Snapshot, tr: gettext.NullTranslations) -> str:
    _ = tr.gettext
    state = snapshot.state
    if state is AgentState.NO_READER:
        return _("No card reader")
    if state is AgentState.NO_CARD:
        return _("Insert your ID card")
    if state is AgentState.BUSY:
        return _("Busy: using your ID card")
    if state is AgentState.ERROR:
        return _("Error: %(error)s") % {"error": snapshot.error or _("unknown")}
    reader = _ready_reader(snapshot)
    card = reader.card if reader else None
    card_type = (card.card_type if card else None) or _("ID card")
    if card and card.holder_first_name:
        return _("Card ready: %(name)s (%(card)s)") % {
            "name": card.holder_first_name,
            "card": card_type,
        }
    return _("Card ready (%(card)s)") % {"card": card_type}


def tooltip(snapshot: Snapshot, tr: gettext.NullTranslations) -> str:
    text = f"{APP_NAME}: {status_text(snapshot, tr)}"
    return text if len(text) <= TOOLTIP_MAX else text[: TOOLTIP_MAX - 1] + "\u2026"


def _reader_line(reader: ReaderSummary, tr: gettext.NullTranslations) -> str:
    _ = tr.gettext
    if reader.card is None:
        what = _("no card")
    else:
        parts = [reader.card.card_type or _("unknown card"), reader.card.holder_name]
        what = " - ".join(p for p in parts if p)
        if reader.card.pin_blocked:
            what += " (" + _("PIN blocked") + ")"
    pad = " [" + _("PIN pad") + "]" if reader.pinpad else ""
    return f"{reader.name}{pad}: {what}"


def notice_text(notice: Notice, detail: str, tr: gettext.NullTranslations) -> tuple[str, str]:
    """(title, message) of a desktop notification."""
    _ = tr.gettext
    if notice is Notice.CARD_INSERTED:
        return _("Card inserted"), detail
    if notice is Notice.CARD_REMOVED:
        return _("Card removed"), detail
    if notice is Notice.PORT_TAKEN:
        return _("Another program holds the agent's port"), detail
    return _("PIN blocked"), _(
        "The PIN of your card is blocked (%(detail)s). Unblock it with your PUK or at the "
        "card issuer."
    ) % {"detail": detail}


def build_menu(
    snapshot: Snapshot,
    tr: gettext.NullTranslations,
    actions: MenuActions,
    autostart: bool | None = None,
) -> tuple[MenuEntry, ...]:
    """The tray menu for ``snapshot``; ``autostart`` None hides the start-at-login switch."""
    _ = tr.gettext
    none = (MenuEntry(_("None"), enabled=False),)
    readers = tuple(MenuEntry(_reader_line(r, tr), enabled=False) for r in snapshot.readers)
    connected = tuple(MenuEntry(o, enabled=False) for o in snapshot.connected_origins)

    def revoke(origin: str) -> Callable[[], None]:
        return lambda: actions.revoke(origin)

    allowed = tuple(
        MenuEntry(_("Revoke %(origin)s") % {"origin": o}, action=revoke(o))
        for o in snapshot.allowed_origins
    ) + tuple(
        MenuEntry(_("%(origin)s (allowed by your organisation)") % {"origin": o}, enabled=False)
        for o in snapshot.policy_origins
    )
    entries = [
        MenuEntry(status_text(snapshot, tr), enabled=False),
        SEPARATOR,
        MenuEntry(
            _("Readers and cards"),
            submenu=readers or (MenuEntry(_("No card reader"), enabled=False),),
        ),
        MenuEntry(_("Sites connected now"), submenu=connected or none),
        MenuEntry(_("Allowed sites"), submenu=allowed or none),
        SEPARATOR,
    ]
    if autostart is not None and actions.toggle_autostart is not None:
        entries.append(
            MenuEntry(_("Start at login"), action=actions.toggle_autostart, checked=autostart)
        )
    about = (
        MenuEntry(_("Version %(version)s") % {"version": snapshot.version or "?"}, enabled=False),
        MenuEntry(_("Listening on port %(port)d") % {"port": snapshot.port}, enabled=False),
    )
    entries += [
        MenuEntry(_("Open the log folder"), action=actions.open_log_folder),
        MenuEntry(_("About eid-agent"), submenu=about),
        SEPARATOR,
        MenuEntry(_("Quit"), action=actions.quit),
    ]
    return tuple(entries)


def to_pystray(entries: tuple[MenuEntry, ...], pystray: Any) -> Any:
    """Turn menu data into a ``pystray.Menu`` (``pystray`` is the imported module)."""
    items = []
    for entry in entries:
        if entry.separator:
            items.append(pystray.Menu.SEPARATOR)
        elif entry.submenu is not None:
            items.append(pystray.MenuItem(entry.text, to_pystray(entry.submenu, pystray),
                                          enabled=entry.enabled))
        else:
            items.append(
                pystray.MenuItem(
                    entry.text,
                    _on_click(entry.action) if entry.action else None,
                    enabled=entry.enabled and entry.action is not None,
                    checked=_is_checked(entry.checked) if entry.checked is not None else None,
                )
            )
    return pystray.Menu(*items)


def _on_click(action: Callable[[], None]) -> Callable[[Any, Any], None]:
    def clicked(icon: Any, item: Any) -> None:  # pystray counts the arguments: keep two
        action()

    return clicked


def _is_checked(value: bool) -> Callable[[Any], bool]:
    def checked(item: Any) -> bool:
        return value

    return checked


def open_folder(path: str) -> None:
    """Show ``path`` in the platform's file manager."""
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    subprocess.Popen(  # noqa: S603
        [opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


class TrayApp:
    """The tray icon of one agent process."""

    def __init__(
        self,
        control: AgentControl,
        autostart: AutostartToggle | None = None,
        *,
        lang: str | None = None,
    ) -> None:
        self.control = control
        self.autostart = autostart
        self.tr = translator(lang)
        self._icon: Any = None
        self._pystray: Any = None
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._stop_requested = False
        self._start_notices: list[tuple[Notice, str]] = []

    # --- model -------------------------------------------------------------------------

    def actions(self) -> MenuActions:
        return MenuActions(
            revoke=self.control.revoke_origin,
            open_log_folder=lambda: open_folder(self.control.log_folder()),
            quit=self.quit,
            toggle_autostart=self._toggle_autostart if self.autostart else None,
        )

    def menu_entries(self, snapshot: Snapshot | None = None) -> tuple[MenuEntry, ...]:
        snapshot = snapshot or self.control.snapshot()
        enabled = self.autostart.is_enabled() if self.autostart else None
        return build_menu(snapshot, self.tr, self.actions(), enabled)

    def _toggle_autostart(self) -> None:
        if self.autostart is None:
            return
        self.autostart.set_enabled(not self.autostart.is_enabled())
        self._refresh(self.control.snapshot())

    # --- running -----------------------------------------------------------------------

    def run(self) -> None:
        """Show the icon and block until Quit (call on the main thread)."""
        import pystray  # noqa: PLC0415 - needs a display on Linux

        self._pystray = pystray
        snapshot = self.control.snapshot()
        self._icon = pystray.Icon(
            APP_NAME,
            icon=draw_icon(snapshot.state),
            title=tooltip(snapshot, self.tr),
            menu=to_pystray(self.menu_entries(snapshot), pystray),
        )
        self._unsubscribe = self.control.subscribe(self._refresh, self._notify)
        logger.info("tray icon running (%s backend)", type(self._icon).__module__)
        try:
            self._icon.run(setup=self._setup)
        except Exception as exc:
            if not self._stop_requested:
                raise
            # pystray's gtk backend fails in its clean-up when no notification daemon runs;
            # the icon is gone either way, so one line is enough.
            logger.warning("the tray backend failed while closing: %s", exc)
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()

    def notify_on_start(self, notice: Notice, detail: str) -> None:
        """Show a notice as soon as the icon is up (e.g. a squatted port found at start)."""
        self._start_notices.append((notice, detail))

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        if self._stop_requested:
            icon.stop()
            return
        for notice, detail in self._start_notices:
            self._notify(notice, detail)

    def _refresh(self, snapshot: Snapshot) -> None:
        with self._lock:
            icon = self._icon
            if icon is None:
                return
            icon.icon = draw_icon(snapshot.state)
            icon.title = tooltip(snapshot, self.tr)
            icon.menu = to_pystray(self.menu_entries(snapshot), self._pystray)
            icon.update_menu()

    def _notify(self, notice: Notice, detail: str) -> None:
        icon = self._icon
        title, message = notice_text(notice, detail, self.tr)
        logger.info("notice %s", notice.value)
        if icon is not None and getattr(icon, "HAS_NOTIFICATION", False):
            try:
                icon.notify(message or title, title)
            except Exception:  # a notification daemon may be missing; the tray keeps going
                logger.warning("could not show a notification", exc_info=True)

    def quit(self) -> None:
        logger.info("quit from the tray")
        try:
            self.control.shutdown()
        finally:
            self.stop()

    def stop(self) -> None:
        """Remove the icon and return from :meth:`run` (from any thread)."""
        self._stop_requested = True
        if self._icon is not None:
            self._icon.stop()
