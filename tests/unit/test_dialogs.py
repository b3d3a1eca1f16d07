"""The Qt dialogs without a display (QT_QPA_PLATFORM=offscreen): accessibility, keyboard
path, PIN field rules, translations; and the dialog process protocol through
DialogInteraction (cancel, timeout, errors, restart, idle stop)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QApplication,
    QLabel,
    QLineEdit,
    QListWidget,
    QWidget,
)

from agent.cards.base import PinInfo  # noqa: E402
from agent.core.interaction import (  # noqa: E402
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
from agent.errors import UserCancelledError, UserTimeoutError  # noqa: E402
from tray import i18n  # noqa: E402
from tray.dialogs.widgets import (  # noqa: E402
    DIALOGS,
    INPUT_DELAY_MS,
    ConsentDialog,
    PinChangeDialog,
    PinDialog,
    RequestError,
    TrustedDialog,
    create_dialog,
)
from tray.interaction import DialogInteraction, DialogProcessError  # noqa: E402

ORIGIN = "https://portal.example.be"
ROOT = Path(__file__).resolve().parents[2]


def request_for(kind: str, lang: str = "en", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1,
        "type": kind,
        "origin": ORIGIN,
        "operation": "authenticate",
        "pinName": "PIN",
        "triesLeft": 3,
        "holder": "Alice Specimen",
        "cardType": "Belgian eID",
        "reader": "Virtual PCD 00 00",
        "timeout": 120,
        "lang": lang,
    }
    if kind == "choose-card":
        base["choices"] = [
            {"reader": "Reader A", "cardType": "Belgian eID", "holder": "Alice", "serial": "1"},
            {"reader": "Reader B", "cardType": "Estonian ID", "holder": "Mari", "serial": "2"},
        ]
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def qapp() -> QApplication:
    app = QApplication.instance() or QApplication(["test"])
    assert isinstance(app, QApplication)
    return app


class Shown:
    """A shown dialog and the replies it sent."""

    def __init__(self, dialog: TrustedDialog) -> None:
        self.dialog = dialog
        self.replies: list[dict[str, Any]] = []
        dialog.replied.connect(self.replies.append)
        dialog.present()
        QTest.qWaitForWindowExposed(dialog)
        dialog.activateWindow()
        QTest.qWaitForWindowActive(dialog)

    def close(self) -> None:
        if not self.replies:
            self.dialog.close_silently()
        self.dialog.deleteLater()


@pytest.fixture
def show(qapp: QApplication):  # type: ignore[no-untyped-def]
    opened: list[Shown] = []

    def open_(request: dict[str, Any]) -> Shown:
        shown = Shown(create_dialog(request))
        opened.append(shown)
        return shown

    yield open_
    for shown in opened:
        shown.close()


def controls(dialog: QWidget) -> list[QWidget]:
    found: list[QWidget] = []
    for cls in (QAbstractButton, QLineEdit, QListWidget, QLabel):
        found += [w for w in dialog.findChildren(cls) if not w.isHidden()]
    return found


# --- accessibility ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
@pytest.mark.parametrize("kind", sorted(DIALOGS))
def test_every_control_has_accessible_name_and_description(show, kind: str, lang: str) -> None:
    shown = show(request_for(kind, lang, triesLeft=1))
    widgets = controls(shown.dialog)
    assert any(isinstance(w, QAbstractButton) for w in widgets)
    for widget in widgets:
        assert widget.accessibleName().strip(), f"{type(widget).__name__} {widget!r} has no name"
        assert widget.accessibleDescription().strip(), f"{widget.accessibleName()} no description"
    assert shown.dialog.accessibleName()


def test_pin_field_announces_purpose_and_tries(show) -> None:
    dialog = show(request_for("pin", triesLeft=2)).dialog
    assert isinstance(dialog, PinDialog)
    assert dialog.pin_edit.accessibleName() == "Enter your PIN:"
    description = dialog.pin_edit.accessibleDescription()
    assert "Log in" in description and ORIGIN in description
    assert "2 tries left" in description


def test_pin_field_announces_tries_in_dutch(show) -> None:
    dialog = show(request_for("pin", "nl", triesLeft=2, operation="sign")).dialog
    assert isinstance(dialog, PinDialog)
    assert dialog.pin_edit.accessibleName() == "Voer uw PIN in:"
    assert "Nog 2 pogingen" in dialog.pin_edit.accessibleDescription()
    assert "Een document ondertekenen" in dialog.pin_edit.accessibleDescription()


def test_dialogs_stay_on_top_and_show_origin_as_plain_text(show) -> None:
    origin = "https://<b>evil</b>.example"
    dialog = show(request_for("consent-site", origin=origin)).dialog
    assert dialog.windowFlags() & Qt.WindowType.WindowStaysOnTopHint
    assert dialog.origin_label.text() == origin
    assert dialog.origin_label.textFormat() == Qt.TextFormat.PlainText
    assert not dialog.findChildren(QLineEdit)  # nothing editable, least of all the origin


# --- keyboard path -----------------------------------------------------------------------


def tab_path(dialog: TrustedDialog, steps: int) -> list[QWidget | None]:
    path = [QApplication.focusWidget()]
    for _ in range(steps):
        QTest.keyClick(QApplication.focusWidget() or dialog, Qt.Key.Key_Tab)
        path.append(QApplication.focusWidget())
    return path


def test_pin_dialog_tab_order_enter_accepts(show) -> None:
    shown = show(request_for("pin"))
    dialog = shown.dialog
    assert isinstance(dialog, PinDialog)
    assert QApplication.focusWidget() is dialog.pin_edit
    QTest.keyClicks(dialog.pin_edit, "1234")
    assert tab_path(dialog, 3) == [dialog.pin_edit, dialog.ok_button, dialog.cancel_button,
                                   dialog.pin_edit]
    QTest.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    assert shown.replies == [{"result": "ok", "pin": "1234"}]
    assert dialog.pin_edit.text() == ""  # wiped after sending


def test_pin_dialog_escape_cancels(show) -> None:
    shown = show(request_for("pin"))
    QTest.keyClicks(QApplication.focusWidget(), "12")
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert shown.replies == [{"result": "cancel"}]


def test_pin_field_digits_only_and_length_limits(show) -> None:
    shown = show(request_for("pin", minLength=4, maxLength=6))
    dialog = shown.dialog
    assert isinstance(dialog, PinDialog)
    assert dialog.pin_edit.echoMode() == QLineEdit.EchoMode.Password
    QTest.keyClicks(dialog.pin_edit, "1a2b3")
    assert dialog.pin_edit.text() == "123"
    assert not dialog.ok_button.isEnabled()
    QTest.keyClick(dialog.pin_edit, Qt.Key.Key_Return)  # too short: nothing sent
    assert shown.replies == []
    QTest.keyClicks(dialog.pin_edit, "456789")
    assert dialog.pin_edit.text() == "123456"
    assert dialog.ok_button.isEnabled()


@pytest.mark.parametrize("tries, warned", [(3, False), (2, False), (1, True)])
def test_warning_only_before_last_try(show, tries: int, warned: bool) -> None:
    dialog = show(request_for("pin", triesLeft=tries)).dialog
    assert isinstance(dialog, PinDialog)
    assert (dialog.warning_label is not None) is warned
    if warned:
        assert dialog.warning_label is not None
        assert "Last try" in dialog.warning_label.text()
        assert "Last try" in dialog.pin_edit.accessibleDescription()


def test_pin_change_keyboard_path_and_mismatch(show) -> None:
    shown = show(request_for("pin-change"))
    dialog = shown.dialog
    assert isinstance(dialog, PinChangeDialog)
    assert QApplication.focusWidget() is dialog.current_edit
    QTest.keyClicks(dialog.current_edit, "1111")
    QTest.keyClick(dialog.current_edit, Qt.Key.Key_Tab)
    QTest.keyClicks(QApplication.focusWidget(), "2222")
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    QTest.keyClicks(QApplication.focusWidget(), "2223")
    assert QApplication.focusWidget() is dialog.repeat_edit
    assert not dialog.mismatch.isHidden() and not dialog.ok_button.isEnabled()
    QTest.keyClick(dialog.repeat_edit, Qt.Key.Key_Backspace)
    QTest.keyClicks(dialog.repeat_edit, "2")
    assert dialog.mismatch.isHidden() and dialog.ok_button.isEnabled()
    QTest.keyClick(dialog.repeat_edit, Qt.Key.Key_Enter)
    assert shown.replies == [{"result": "ok", "pin": "1111", "newPin": "2222"}]


CONSENT_KINDS = sorted(k for k, cls in DIALOGS.items() if issubclass(cls, ConsentDialog))
STRAY_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space, Qt.Key.Key_Escape)


def test_every_consent_kind_is_guarded() -> None:
    assert CONSENT_KINDS == sorted(k for k in DIALOGS if k.startswith("consent-"))
    assert {"consent-site", "consent-identity", "consent-certificate"} <= set(CONSENT_KINDS)


def press_everything(dialog: TrustedDialog) -> None:
    """Every key a stray hand could press, at the focus and at each button, and clicks."""
    assert isinstance(dialog, ConsentDialog)
    for key in STRAY_KEYS:
        QTest.keyClick(QApplication.focusWidget() or dialog, key)
        QTest.keyClick(dialog, key)
    for button in dialog.choices:
        QTest.keyClick(button, Qt.Key.Key_Space)
        QTest.keyClick(button, Qt.Key.Key_Return)
        QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_released(dialog: TrustedDialog) -> None:
    assert isinstance(dialog, ConsentDialog)
    for _ in range(30):
        if not dialog.guarded:
            break
        QTest.qWait(INPUT_DELAY_MS // 10)
    assert not dialog.guarded


@pytest.mark.parametrize("kind", CONSENT_KINDS)
def test_stray_keys_and_clicks_on_a_fresh_consent_approve_nothing(show, kind: str) -> None:
    shown = show(request_for(kind))
    dialog = shown.dialog
    assert isinstance(dialog, ConsentDialog)
    assert dialog.guarded and not any(b.isEnabled() for b in dialog.choices)
    press_everything(dialog)
    assert shown.replies == []  # not even a denial or a cancel: nothing was answered
    QTest.qWait(INPUT_DELAY_MS // 2)
    press_everything(dialog)
    assert shown.replies == []
    wait_released(dialog)
    # the only default is Deny, and it has the focus: a late Enter can only deny
    defaults = [b for b in dialog.choices if b.isDefault()]
    assert defaults == [dialog.deny_button]
    assert QApplication.focusWidget() is dialog.deny_button
    QTest.keyClick(dialog.deny_button, Qt.Key.Key_Return)
    assert shown.replies == [{"result": "ok", "decision": "deny"}]


@pytest.mark.parametrize("kind", CONSENT_KINDS)
def test_consent_is_guarded_again_after_regaining_focus(qapp: QApplication, show,
                                                        kind: str) -> None:
    shown = show(request_for(kind))
    dialog = shown.dialog
    assert isinstance(dialog, ConsentDialog)
    wait_released(dialog)
    other = QWidget()
    other.show()
    other.activateWindow()
    QTest.qWaitForWindowActive(other)
    assert dialog.guarded  # insensitive while another window is in front
    dialog.activateWindow()
    QTest.qWaitForWindowActive(dialog)
    assert dialog.guarded
    press_everything(dialog)
    assert shown.replies == []
    wait_released(dialog)
    QTest.mouseClick(dialog.choices[-1], Qt.MouseButton.LeftButton)  # a deliberate click
    assert shown.replies and shown.replies[0]["decision"] != "deny"
    other.deleteLater()


@pytest.mark.parametrize(
    "tabs, decision", [(0, "deny"), (1, "allow-once"), (2, "allow-always")]
)
def test_site_consent_keyboard_after_the_delay(show, tabs: int, decision: str) -> None:
    shown = show(request_for("consent-site"))
    wait_released(shown.dialog)
    for _ in range(tabs):
        QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)  # Space presses the focused one
    assert shown.replies == [{"result": "ok", "decision": decision}]


def test_consent_return_presses_the_button_the_user_tabbed_to(show) -> None:
    shown = show(request_for("consent-identity"))
    wait_released(shown.dialog)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is shown.dialog.allow_button
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    assert shown.replies == [{"result": "ok", "decision": "allow-once"}]


def test_identity_consent_escape_cancels_after_the_delay(show) -> None:
    shown = show(request_for("consent-identity"))
    QTest.keyClick(shown.dialog, Qt.Key.Key_Escape)
    assert shown.replies == []  # ignored while guarded
    wait_released(shown.dialog)
    assert QApplication.focusWidget() is shown.dialog.deny_button
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert shown.replies == [{"result": "cancel"}]


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_consent_says_what_the_site_gets(show, lang: str) -> None:
    site = show(request_for("consent-site", lang, origin="https://portal.example.be:8443"))
    identity = show(request_for("consent-identity", lang))
    certificate = show(request_for("consent-certificate", lang, subjectId="85073003328"))
    words = {
        "en": ("national number", "PIN", "photo", "address"),
        "nl": ("rijksregisternummer", "PIN", "foto", "adres"),
        "fr": ("registre national", "PIN", "photo", "adresse"),
        "de": ("Nationalregisternummer", "PIN", "Foto", "Adresse"),
    }[lang]
    site_text = site.dialog.what.text()
    assert "portal.example.be" in site_text and ":8443" not in site_text
    assert words[0] in site_text and words[1] in site_text
    identity_text = identity.dialog.what.text()
    assert all(w in identity_text for w in (words[0], words[2], words[3]))
    assert words[0] in certificate.dialog.what.text()
    texts = [label.text() for label in certificate.dialog.findChildren(QLabel)]
    assert "85073003328" in texts


def test_pin_dialog_stray_enter_sends_nothing_until_typed(show) -> None:
    shown = show(request_for("pin"))
    dialog = shown.dialog
    assert isinstance(dialog, PinDialog)
    for key in STRAY_KEYS[:3]:
        QTest.keyClick(dialog.pin_edit, key)
        QTest.keyClick(dialog, key)
    QTest.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert shown.replies == [] and not dialog.ok_button.isEnabled()
    QTest.keyClicks(dialog.pin_edit, "1234")
    QTest.keyClick(dialog.pin_edit, Qt.Key.Key_Return)  # no delay: the PIN is no consent
    assert shown.replies == [{"result": "ok", "pin": "1234"}]


def test_choose_card_with_arrow_keys(show) -> None:
    shown = show(request_for("choose-card"))
    assert isinstance(QApplication.focusWidget(), QListWidget)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    assert shown.replies == [{"result": "ok", "index": 1}]


def test_pinpad_notice_cancel_button_has_focus(show) -> None:
    shown = show(request_for("pinpad", lang="fr"))
    assert QApplication.focusWidget() is shown.dialog.cancel_button
    assert shown.dialog.cancel_button.text() == "Annuler"
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert shown.replies == [{"result": "cancel"}]


@pytest.mark.parametrize(
    "reason, holder, text",
    [("no-reader", None, "Connect your card reader."),
     ("wrong-card", "Alice Specimen", "Insert the ID card of Alice Specimen."),
     ("wrong-card", None, "Insert the ID card you used before.")],
)
def test_card_wait_notice_says_what_to_do(show, reason: str, holder: str | None,
                                          text: str) -> None:
    shown = show(request_for("card-wait", reason=reason, holder=holder))
    assert shown.dialog.prompt.text() == text
    assert QApplication.focusWidget() is shown.dialog.cancel_button
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert shown.replies == [{"result": "cancel"}]


def test_dialog_countdown_times_out(show) -> None:
    shown = show(request_for("consent-site", timeout=1))
    for _ in range(100):
        if shown.replies:
            break
        QTest.qWait(100)
    assert shown.replies == [{"result": "timeout"}]


def test_text_follows_the_system_font(qapp: QApplication, show) -> None:
    font = qapp.font()
    big = type(font)(font)
    big.setPointSizeF(font.pointSizeF() * 2)
    qapp.setFont(big)
    try:
        dialog = show(request_for("pin")).dialog
        assert dialog.cancel_button.font().pointSizeF() == pytest.approx(big.pointSizeF())
        assert dialog.origin_label.font().pointSizeF() > big.pointSizeF()
    finally:
        qapp.setFont(font)


@pytest.mark.parametrize(
    "bad",
    [{"origin": ""}, {"operation": "format-disk"}, {"timeout": 0}, {"minLength": 9,
                                                                      "maxLength": 4}],
)
def test_malformed_requests_are_refused(qapp: QApplication, bad: dict[str, Any]) -> None:
    with pytest.raises(RequestError):
        create_dialog(request_for("pin", **bad))


# --- translations --------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def catalogs() -> dict[str, i18n.Catalog]:
    return {
        lang: i18n.parse_po(i18n.catalog_paths(lang)[0].read_text(encoding="utf-8"))
        for lang in i18n.LANGUAGES
    }


def test_every_source_string_is_translated_in_every_language() -> None:
    sources = i18n.source_messages((ROOT / "tray").rglob("*.py"))
    assert len(sources) > 50
    for lang, catalog in catalogs().items():
        messages = catalog.by_id()
        missing = sources - messages.keys()
        assert not missing, f"{lang} lacks {sorted(missing)}"
        for message in messages.values():
            assert message.translated, f"{lang}: {message.msgid!r} untranslated"
            for text in message.msgstr:
                assert sorted(PLACEHOLDER.findall(text)) == sorted(
                    PLACEHOLDER.findall(message.msgid)
                ), f"{lang}: placeholders differ in {message.msgid!r}"


def test_compiled_catalogs_are_up_to_date() -> None:
    assert i18n.stale_catalogs() == []


def test_plural_forms_follow_each_language() -> None:
    one = "%(count)d try left for your %(pin)s."
    many = "%(count)d tries left for your %(pin)s."
    assert i18n.translator("fr").ngettext(one, many, 0) == "Il reste %(count)d essai pour votre %(pin)s."
    assert i18n.translator("nl").ngettext(one, many, 0) == "Nog %(count)d pogingen voor uw %(pin)s."


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"LANG": "nl_BE.UTF-8"}, "nl"),
        ({"LANGUAGE": "fr_BE:en", "LANG": "de_DE.UTF-8"}, "fr"),
        ({"LC_ALL": "de_AT.UTF-8", "LANG": "nl_BE.UTF-8"}, "de"),
        ({"LANG": "es_ES.UTF-8"}, "en"),
    ],
)
def test_language_from_the_os_locale(monkeypatch, env: dict[str, str], expected: str) -> None:
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert i18n.os_language() == expected
    assert i18n.resolve_language("fr-CA") == "fr"
    assert i18n.resolve_language("pt") == expected


# --- the dialog process through DialogInteraction -----------------------------------------


def pin_request(timeout: float = 120.0, tries: int | None = 3) -> PinRequest:
    return PinRequest(
        origin=ORIGIN,
        operation=Operation.AUTHENTICATE,
        pin=PinInfo(reference=1, name="PIN"),
        tries_left=tries,
        card_type="Belgian eID",
        reader="Virtual PCD 00 00",
        holder="Alice Specimen",
        timeout=timeout,
    )


def offscreen_interaction(tmp_path: Path, **kwargs: Any) -> DialogInteraction:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    return DialogInteraction(env=env, stderr_path=tmp_path / "dialogs.log", **kwargs)


def test_process_timeout_and_agent_cancel(tmp_path: Path) -> None:
    async def scenario() -> None:
        ui = offscreen_interaction(tmp_path)
        try:
            with pytest.raises(UserTimeoutError):  # the dialog's own countdown
                await ui.ask_consent(ConsentRequest(ORIGIN, ConsentKind.SITE, timeout=1))
            with pytest.raises(TimeoutError):  # the core gives up: the dialog is cancelled
                await asyncio.wait_for(ui.ask_pin(pin_request()), 1.0)
            assert ui.starts == 1
        finally:
            await ui.aclose()
        log = (tmp_path / "dialogs.log").read_text()
        assert "cancel (open)" in log

    asyncio.run(scenario())


def test_process_restarts_after_dying_and_stops_when_idle(tmp_path: Path) -> None:
    async def scenario() -> None:
        ui = offscreen_interaction(tmp_path, idle_timeout=0.3)
        try:
            task = asyncio.create_task(ui.ask_pin(pin_request()))
            while ui.pid is None:
                await asyncio.sleep(0.05)
            first = ui._proc
            assert first is not None
            await asyncio.sleep(0.5)
            first.kill()
            with pytest.raises(DialogProcessError):
                await task
            choice = ChoiceRequest(ORIGIN, Operation.SIGN,
                                   (CardChoice("R", "Belgian eID", "Alice", "1"),), timeout=1)
            with pytest.raises(UserTimeoutError):
                await ui.choose_card(choice)
            assert ui.starts == 2
            second = ui._proc
            assert second is not None and second is not first
            for _ in range(100):  # idle stop after 0.3 s
                if second.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            assert second.returncode == 0 and not ui.running
        finally:
            await ui.aclose()

    asyncio.run(scenario())


def test_pinpad_notice_is_closed_by_the_agent(tmp_path: Path) -> None:
    async def scenario() -> None:
        ui = offscreen_interaction(tmp_path)
        try:
            async with ui.pinpad_notice(pin_request()):
                await asyncio.sleep(0.3)
        finally:
            await ui.aclose()
        log = (tmp_path / "dialogs.log").read_text()
        assert "pinpad dialog opened" in log and "1: closed" in log

    asyncio.run(scenario())


# A stand-in dialog program that answers every request with a fixed reply, to check how
# DialogInteraction maps replies (the real program is exercised above and under Xvfb).
ANSWERING = """
import json, sys
reply = json.loads(sys.argv[1])
for line in sys.stdin:
    request = json.loads(line)
    if request.get("type") != "cancel":
        print(json.dumps({"id": request["id"], **reply}), flush=True)
"""


def answering(reply: dict[str, Any]) -> DialogInteraction:
    import json
    import sys

    return DialogInteraction(command=[sys.executable, "-c", ANSWERING, json.dumps(reply)])


def test_reply_mapping() -> None:
    async def scenario() -> None:
        site = ConsentRequest(ORIGIN, ConsentKind.SITE)
        identity = ConsentRequest(ORIGIN, ConsentKind.IDENTITY)
        cases: list[tuple[dict[str, Any], Any, Any]] = [
            ({"result": "cancel"}, lambda ui: ui.ask_consent(site), ConsentDecision.DENY),
            ({"result": "ok", "decision": "allow-always"}, lambda ui: ui.ask_consent(site),
             ConsentDecision.ALLOW_ALWAYS),
            ({"result": "ok", "decision": "allow-always"}, lambda ui: ui.ask_consent(identity),
             ConsentDecision.ALLOW_ONCE),
            ({"result": "cancel"}, lambda ui: ui.ask_pin(pin_request()), UserCancelledError),
            ({"result": "timeout"}, lambda ui: ui.ask_pin(pin_request()), UserTimeoutError),
            ({"result": "ok", "pin": "12a4"}, lambda ui: ui.ask_pin(pin_request()),
             DialogProcessError),
            ({"result": "ok", "pin": "1234", "newPin": "5678"},
             lambda ui: ui.ask_pin_change(pin_request()), ("1234", "5678")),
            ({"result": "cancel"}, lambda ui: _pinpad(ui), UserCancelledError),
            ({"result": "cancel"}, lambda ui: _card_wait(ui), UserCancelledError),
        ]
        for reply, call, expected in cases:
            ui = answering(reply)
            try:
                if isinstance(expected, type) and issubclass(expected, Exception):
                    with pytest.raises(expected):
                        await call(ui)
                else:
                    assert await call(ui) == expected
            finally:
                await ui.aclose()

    asyncio.run(scenario())


async def _card_wait(ui: DialogInteraction) -> None:
    """The user's Cancel on "insert your card" ends the core's wait."""
    request = CardWaitRequest(ORIGIN, Operation.SIGN, CardWaitReason.NO_CARD, timeout=30)
    async with ui.card_notice(request):
        await asyncio.sleep(30)


async def _pinpad(ui: DialogInteraction) -> None:
    """The user's Cancel on the notice ends the block that waits for the reader."""
    async with ui.pinpad_notice(pin_request()):
        await asyncio.sleep(30)


def test_malformed_request_is_an_error_not_a_hang(tmp_path: Path) -> None:
    async def scenario() -> None:
        ui = offscreen_interaction(tmp_path)
        try:
            with pytest.raises(DialogProcessError, match="origin"):
                await ui.ask_consent(ConsentRequest("", ConsentKind.SITE))
        finally:
            await ui.aclose()

    asyncio.run(scenario())
