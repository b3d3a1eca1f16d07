"""The Qt dialogs: PIN, PIN change, PIN-pad notice, site consent, identity consent, card choice.

Design rules, for trust and accessibility:

- The requesting origin is shown first and large, as plain text (never rich text, never
  editable); the operation is said in plain words.
- Every dialog stays on top and takes focus when shown.
- A consent dialog (its "yes" gives card data to a site) cannot be clicked through: no
  allowing default, focus on Deny, and all input ignored for a second after it appears or
  regains focus (:class:`ConsentDialog`).
- Every control has an accessible name and description; the dialogs work with the keyboard
  alone (explicit tab order, Enter accepts the default button, Escape cancels;
  in a consent dialog the default is Deny).
- No fixed pixel sizes or colours: text follows the system font size and palette, so it
  scales and stays readable in high-contrast themes. Warnings are marked by text and a
  symbol, not by colour alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtCore import QEvent, QRegularExpression, Qt, QTimer, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QFont,
    QKeyEvent,
    QRegularExpressionValidator,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tray.i18n import N_, translator

logger = logging.getLogger(__name__)

Reply = dict[str, Any]

# The operation in plain words, as the request's "operation" names it (agent.core.interaction.Operation).
OPERATIONS = {
    "authenticate": N_("Log in"),
    "sign": N_("Sign a document"),
    "read-identity": N_("Read your identity data"),
    "change-pin": N_("Change your PIN"),
    "get-certificate": N_("Read your signing certificate"),
}

DEFAULT_MIN_LENGTH = 4
DEFAULT_MAX_LENGTH = 12


class RequestError(ValueError):
    """The request is malformed; the dialog is not shown."""


def _str(request: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = request.get(key, default)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{key} must be a string")
    return value


def _int(request: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = request.get(key, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise RequestError(f"{key} must be an integer")
    return value


def _scaled_font(base: QFont, factor: float, *, bold: bool = False) -> QFont:
    font = QFont(base)
    if font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * factor)
    elif font.pixelSize() > 0:
        font.setPixelSize(round(font.pixelSize() * factor))
    font.setBold(bold)
    return font


def _label(text: str, *, description: str = "", name: str | None = None) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # page-supplied text is never rich text
    label.setWordWrap(True)
    label.setAccessibleName(name or text)
    label.setAccessibleDescription(description or text)
    return label


def _button(text: str, description: str) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(text.replace("&", ""))
    button.setAccessibleDescription(description)
    return button


class TrustedDialog(QDialog):
    """Common frame: origin header, details form, countdown, button row, one reply."""

    replied = Signal(dict)
    title_text = N_("ID card")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.tr_ = translator(_str(request, "lang"))
        self._ = self.tr_.gettext
        self.origin = _str(request, "origin") or ""
        if not self.origin:
            raise RequestError("origin is required")
        timeout = request.get("timeout", 120)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise RequestError("timeout must be a positive number of seconds")
        self.remaining = int(timeout)
        self._done = False

        self.setWindowFlags(
            Qt.WindowType.Dialog
            | Qt.WindowType.WindowStaysOnTopHint
            | Qt.WindowType.WindowTitleHint
            | Qt.WindowType.WindowCloseButtonHint
        )
        self.setWindowTitle(f"{self._(self.title_text)} - eid-agent")
        self.setAccessibleName(self._(self.title_text))
        self.setModal(True)
        self.setMinimumWidth(self.fontMetrics().averageCharWidth() * 64)  # scales with the font

        self.layout_ = QVBoxLayout(self)
        intro = _label(self._("Request from this website:"))
        self.origin_label = _label(
            self.origin,
            name=self._("Website"),
            description=self._("The website asking for this: %(origin)s") % {"origin": self.origin},
        )
        self.origin_label.setFont(_scaled_font(self.font(), 1.4, bold=True))
        self.origin_label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.layout_.addWidget(intro)
        self.layout_.addWidget(self.origin_label)
        self.form = QFormLayout()
        self.layout_.addLayout(self.form)
        self.body = QVBoxLayout()
        self.layout_.addLayout(self.body)
        self.countdown = _label("")
        self.layout_.addWidget(self.countdown)
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        self.layout_.addLayout(self.buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        self._update_countdown()

    # --- building blocks -----------------------------------------------------------

    def operation_text(self) -> str:
        operation = _str(self.request, "operation", "authenticate") or "authenticate"
        if operation not in OPERATIONS:
            raise RequestError(f"unknown operation {operation!r}")
        return self._(OPERATIONS[operation])

    def add_row(self, caption: str, value: str) -> QLabel:
        caption_label = _label(caption)
        value_label = _label(value, name=caption, description=f"{caption} {value}")
        self.form.addRow(caption_label, value_label)
        return value_label

    def add_card_rows(self) -> None:
        holder = _str(self.request, "holder")
        if holder:
            self.add_row(self._("Card holder:"), holder)
        card_type = _str(self.request, "cardType")
        reader = _str(self.request, "reader")
        card = " - ".join(part for part in (card_type, reader) if part)
        if card:
            self.add_row(self._("Card:"), card)

    def add_button(self, text: str, description: str, slot: Callable[[], None]) -> QPushButton:
        button = _button(text, description)
        button.clicked.connect(slot)
        self.buttons.addWidget(button)
        return button

    def chain_tab_order(self, widgets: Sequence[QWidget]) -> None:
        for first, second in zip(widgets, widgets[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def focus_chain(self) -> list[QWidget]:
        """The keyboard path through the dialog, in tab order."""
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------

    def _update_countdown(self) -> None:
        text = self.tr_.ngettext(
            "This window closes in %(seconds)d second.",
            "This window closes in %(seconds)d seconds.",
            self.remaining,
        ) % {"seconds": self.remaining}
        self.countdown.setText(text)
        self.countdown.setAccessibleName(self._("Time left"))
        self.countdown.setAccessibleDescription(text)

    def _tick(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.finish({"result": "timeout"})
            return
        self._update_countdown()

    def present(self) -> None:
        """Show on top, take focus, start the countdown."""
        self.show()
        self.raise_()
        self.activateWindow()
        self.timer.start()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.raise_()
        self.activateWindow()

    def finish(self, reply: Reply) -> None:
        """Send the one reply and close."""
        if self._done:
            return
        self._done = True
        self.timer.stop()
        self.replied.emit(reply)
        self.wipe()
        self.done(QDialog.DialogCode.Accepted if reply["result"] == "ok" else 0)

    def close_silently(self) -> None:
        """Closed by the agent (``cancel`` message): no user reply."""
        self.finish({"result": "closed"})

    def wipe(self) -> None:
        """Forget typed secrets."""

    def reject(self) -> None:  # Escape
        self.finish({"result": "cancel"})

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.finish({"result": "cancel"})
        super().closeEvent(event)


def _pin_edit(name: str, description: str, min_length: int, max_length: int) -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setMaxLength(max_length)
    edit.setValidator(QRegularExpressionValidator(QRegularExpression(f"[0-9]{{0,{max_length}}}")))
    edit.setInputMethodHints(
        Qt.InputMethodHint.ImhDigitsOnly
        | Qt.InputMethodHint.ImhSensitiveData
        | Qt.InputMethodHint.ImhNoPredictiveText
        | Qt.InputMethodHint.ImhHiddenText
    )
    edit.setAccessibleName(name)
    edit.setAccessibleDescription(description)
    edit.setProperty("minLength", min_length)
    return edit


class PinBase(TrustedDialog):
    """Shared by the PIN, PIN-change and PIN-pad dialogs: what, who, tries left."""

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.pin_name = _str(request, "pinName", "PIN") or "PIN"
        self.tries_left = _int(request, "triesLeft")
        self.min_length = _int(request, "minLength", DEFAULT_MIN_LENGTH) or DEFAULT_MIN_LENGTH
        self.max_length = _int(request, "maxLength", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH
        if not 1 <= self.min_length <= self.max_length <= 64:
            raise RequestError("bad PIN length limits")
        self.add_row(self._("Action:"), self.operation_text())
        detail = _str(request, "detail")
        if detail:
            self.add_row(self._("Document:"), detail)
        self.add_card_rows()
        self.tries_label: QLabel | None = None
        self.warning_label: QLabel | None = None
        if self.tries_left is not None:
            self.tries_label = _label(self.tries_text())
            self.tries_label.setAccessibleName(self._("Tries left"))
            self.body.addWidget(self.tries_label)
        if self.tries_left == 1:
            self.warning_label = _label(self.warning_text())
            self.warning_label.setAccessibleName(self._("Warning"))
            self.warning_label.setFont(_scaled_font(self.font(), 1.0, bold=True))
            self.body.addWidget(self.warning_label)

    def tries_text(self) -> str:
        n = self.tries_left or 0
        return self.tr_.ngettext(
            "%(count)d try left for your %(pin)s.", "%(count)d tries left for your %(pin)s.", n
        ) % {"count": n, "pin": self.pin_name}

    def warning_text(self) -> str:
        return "\u26a0 " + self._(
            "Last try: if this %(pin)s is wrong, it will be blocked."
        ) % {"pin": self.pin_name}

    def spoken_context(self) -> str:
        """What the PIN field announces: purpose, site, tries left, warning."""
        parts = [
            self._("%(action)s on %(origin)s.")
            % {"action": self.operation_text(), "origin": self.origin}
        ]
        if self.tries_left is not None:
            parts.append(self.tries_text())
        if self.warning_label is not None:
            parts.append(self.warning_text())
        return " ".join(parts)


class PinDialog(PinBase):
    title_text = N_("Enter your PIN")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        prompt = self._("Enter your %(pin)s:") % {"pin": self.pin_name}
        self.prompt = _label(prompt)
        self.pin_edit = _pin_edit(prompt, self.spoken_context(), self.min_length, self.max_length)
        self.prompt.setBuddy(self.pin_edit)
        self.body.insertWidget(0, self.prompt)
        self.body.insertWidget(1, self.pin_edit)
        self.cancel_button = self.add_button(
            self._("Cancel"), self._("Do not enter the PIN; the website is told you cancelled."),
            self.reject,
        )
        self.ok_button = self.add_button(
            self._("OK"), self._("Send the PIN to your ID card."), self._accept_pin
        )
        self.ok_button.setDefault(True)
        self.ok_button.setEnabled(False)
        self.pin_edit.textChanged.connect(self._validate)
        self.chain_tab_order(self.focus_chain())
        self.pin_edit.setFocus()

    def focus_chain(self) -> list[QWidget]:
        return [self.pin_edit, self.ok_button, self.cancel_button]

    def _validate(self) -> None:
        self.ok_button.setEnabled(len(self.pin_edit.text()) >= self.min_length)

    def _accept_pin(self) -> None:
        pin = self.pin_edit.text()
        if self.min_length <= len(pin) <= self.max_length and pin.isdigit():
            self.finish({"result": "ok", "pin": pin})

    def wipe(self) -> None:
        self.pin_edit.clear()


class PinChangeDialog(PinBase):
    title_text = N_("Change your PIN")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__({**request, "operation": "change-pin"}, parent)
        context = self.spoken_context()
        self.current_edit = self._field(
            self._("Current %(pin)s:") % {"pin": self.pin_name}, context
        )
        rules = self._("%(min)d to %(max)d digits.") % {
            "min": self.min_length,
            "max": self.max_length,
        }
        self.new_edit = self._field(self._("New %(pin)s:") % {"pin": self.pin_name}, rules)
        self.repeat_edit = self._field(
            self._("Repeat the new %(pin)s:") % {"pin": self.pin_name},
            self._("Type the new PIN again, to be sure it is right."),
        )
        self.mismatch = _label(self._("The new PINs do not match."))
        self.mismatch.setVisible(False)
        self.body.addWidget(self.mismatch)
        self.cancel_button = self.add_button(
            self._("Cancel"), self._("Keep the current PIN."), self.reject
        )
        self.ok_button = self.add_button(
            self._("Change PIN"), self._("Change the PIN on your ID card."), self._accept
        )
        self.ok_button.setDefault(True)
        self.ok_button.setEnabled(False)
        for edit in (self.current_edit, self.new_edit, self.repeat_edit):
            edit.textChanged.connect(self._validate)
        self.chain_tab_order(self.focus_chain())
        self.current_edit.setFocus()

    def _field(self, caption: str, description: str) -> QLineEdit:
        label = _label(caption)
        edit = _pin_edit(caption, description, self.min_length, self.max_length)
        label.setBuddy(edit)
        self.body.addWidget(label)
        self.body.addWidget(edit)
        return edit

    def focus_chain(self) -> list[QWidget]:
        return [self.current_edit, self.new_edit, self.repeat_edit, self.ok_button,
                self.cancel_button]

    def _validate(self) -> None:
        lengths_ok = all(
            len(edit.text()) >= self.min_length
            for edit in (self.current_edit, self.new_edit, self.repeat_edit)
        )
        mismatch = bool(self.repeat_edit.text()) and self.new_edit.text() != self.repeat_edit.text()
        self.mismatch.setVisible(mismatch)
        self.ok_button.setEnabled(lengths_ok and not mismatch)

    def _accept(self) -> None:
        self._validate()
        if self.ok_button.isEnabled():
            self.finish(
                {"result": "ok", "pin": self.current_edit.text(), "newPin": self.new_edit.text()}
            )

    def wipe(self) -> None:
        for edit in (self.current_edit, self.new_edit, self.repeat_edit):
            edit.clear()


class PinPadDialog(PinBase):
    title_text = N_("Enter your PIN on the reader")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        text = self._("Enter your %(pin)s on the keypad of your card reader.") % {
            "pin": self.pin_name
        }
        self.prompt = _label(text, description=self.spoken_context())
        self.prompt.setFont(_scaled_font(self.font(), 1.1, bold=True))
        self.body.insertWidget(0, self.prompt)
        self.cancel_button = self.add_button(
            self._("Cancel"), self._("Stop waiting for the PIN."), self.reject
        )
        self.cancel_button.setDefault(True)
        self.cancel_button.setFocus()

    def focus_chain(self) -> list[QWidget]:
        return [self.cancel_button]


WAIT_TEXTS = {
    "no-reader": N_("Connect your card reader."),
    "no-card": N_("Insert your ID card."),
    "unrecognised": N_("This card was not recognised. Insert your ID card."),
    "wrong-card": N_("Insert the ID card you used before."),
}


class CardWaitDialog(TrustedDialog):
    """"Insert your ID card" while the core waits for a card; closed by the agent."""

    title_text = N_("Insert your ID card")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        reason = _str(request, "reason", "no-card") or "no-card"
        if reason not in WAIT_TEXTS:
            raise RequestError(f"unknown reason {reason!r}")
        holder = _str(request, "holder")
        if reason == "wrong-card" and holder:
            text = self._("Insert the ID card of %(holder)s.") % {"holder": holder}
        else:
            text = self._(WAIT_TEXTS[reason])
        self.add_row(self._("Action:"), self.operation_text())
        self.prompt = _label(
            text,
            description=self._("%(action)s on %(origin)s.")
            % {"action": self.operation_text(), "origin": self.origin},
        )
        self.prompt.setFont(_scaled_font(self.font(), 1.1, bold=True))
        self.body.addWidget(self.prompt)
        self.cancel_button = self.add_button(
            self._("Cancel"), self._("Stop waiting for the card."), self.reject
        )
        self.cancel_button.setDefault(True)
        self.cancel_button.setFocus()

    def focus_chain(self) -> list[QWidget]:
        return [self.cancel_button]


INPUT_DELAY_MS = 1000  # consent buttons stay insensitive this long after the dialog becomes active


def site_name(origin: str) -> str:
    """``https://portal.example.be:8443`` -> ``portal.example.be`` (the origin when unparsable)."""
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    return host or origin


class ConsentDialog(TrustedDialog):
    """A question whose "yes" gives card data away: it cannot be clicked through.

    - No button that allows is the default, and the focus starts on the safe choice (Deny);
      Enter on a fresh dialog can only deny.
    - Every input is ignored for :data:`INPUT_DELAY_MS` after the dialog appears and again
      after it regains focus: the choice buttons are insensitive while the window is not
      active and for that delay after it becomes active, and key presses (Enter, Space,
      Escape) are swallowed meanwhile, so a keystroke or click meant for another window
      answers nothing.
    - The dialog says, in plain words, what the site will get.
    """

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.site = site_name(self.origin)
        self.choices: list[QPushButton] = []
        self.guard = QTimer(self)
        self.guard.setSingleShot(True)
        self.guard.setInterval(INPUT_DELAY_MS)
        self.guard.timeout.connect(self._release)
        self.deny_button: QPushButton

    def add_choice(self, text: str, description: str, decision: str) -> QPushButton:
        button = self.add_button(text, description, lambda: self._decide(decision))
        button.setEnabled(False)  # until the window has been active for INPUT_DELAY_MS
        self.choices.append(button)
        return button

    def finish_layout(self, deny: QPushButton) -> None:
        """Deny is the default and has the focus; the tab order follows the button row."""
        self.deny_button = deny
        deny.setDefault(True)
        self.chain_tab_order(self.focus_chain())

    def focus_chain(self) -> list[QWidget]:
        return list(self.choices)

    @property
    def guarded(self) -> bool:
        return not self.deny_button.isEnabled()

    def _hold(self) -> None:
        for button in self.choices:
            button.setEnabled(False)
        self.guard.stop()

    def _arm(self) -> None:
        self._hold()
        self.guard.start()

    def _release(self) -> None:
        if not self.isActiveWindow():
            return  # enabled only once the user can see it in front: see changeEvent
        for button in self.choices:
            button.setEnabled(True)
        self.deny_button.setFocus()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._arm()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange:
            if self.isActiveWindow():
                self._arm()
            else:
                self._hold()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if self.guarded:
            event.accept()  # swallowed: no Enter, Space or Escape answers a fresh dialog
            return
        super().keyPressEvent(event)

    def reject(self) -> None:  # Escape; ignored while guarded
        if not self.guarded:
            super().reject()

    def _decide(self, decision: str) -> None:
        if not self.guarded:
            self.finish({"result": "ok", "decision": decision})


class SiteConsentDialog(ConsentDialog):
    title_text = N_("Allow this website?")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.body.addWidget(_label(self._("This website wants to use your ID card.")))
        self.what = _label(
            self._(
                "If you allow it, %(site)s will be able to see that a card is inserted and "
                "whose it is, read your certificates (your name and national number) and ask "
                "you for your PIN to log in or sign. Each login or signature still needs "
                "your PIN."
            ) % {"site": self.site}
        )
        self.body.addWidget(self.what)
        self.add_card_rows()
        deny = self.add_choice(
            self._("Deny"), self._("Do not let this website use your ID card."), "deny"
        )
        self.once_button = self.add_choice(
            self._("Allow once"), self._("Allow this website until you close the page."),
            "allow-once",
        )
        self.always_button = self.add_choice(
            self._("Always allow"),
            self._("Remember this website. You can revoke it from the tray menu."),
            "allow-always",
        )
        self.finish_layout(deny)


class IdentityConsentDialog(ConsentDialog):
    title_text = N_("Share your identity?")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.body.addWidget(
            _label(self._("This website wants to read your identity data from your ID card:"))
        )
        self.what = _label(
            self._(
                "%(site)s will get your name, date and place of birth, sex, nationality, "
                "national number, card number and validity, address and photo."
            ) % {"site": self.site}
        )
        self.body.addWidget(self.what)
        self.add_card_rows()
        deny = self.add_choice(
            self._("Deny"), self._("Do not send your identity data."), "deny"
        )
        self.allow_button = self.add_choice(
            self._("Allow"), self._("Send your identity data to this website once."),
            "allow-once",
        )
        self.finish_layout(deny)


class CertificateConsentDialog(ConsentDialog):
    """May the site read the signing certificate (it names the holder and national number)?"""

    title_text = N_("Share your signing certificate?")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.what = _label(
            self._(
                "%(site)s wants to read your signing certificate. It holds your name and "
                "national number."
            ) % {"site": self.site}
        )
        self.body.addWidget(self.what)
        national_number = _str(request, "subjectId")
        self.add_card_rows()
        if national_number:
            self.add_row(self._("National number:"), national_number)
        deny = self.add_choice(
            self._("Deny"), self._("Do not send your signing certificate."), "deny"
        )
        self.once_button = self.add_choice(
            self._("Allow once"), self._("Send your signing certificate to this website once."),
            "allow-once",
        )
        self.always_button = self.add_choice(
            self._("Always allow"),
            self._("Let this website read your signing certificate without asking again. "
                   "You can revoke it from the tray menu."),
            "allow-always",
        )
        self.finish_layout(deny)


class ChooseCardDialog(TrustedDialog):
    title_text = N_("Choose an ID card")

    def __init__(self, request: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        choices = request.get("choices")
        if not isinstance(choices, list) or not choices:
            raise RequestError("choices must be a non-empty list")
        self.add_row(self._("Action:"), self.operation_text())
        caption = _label(self._("Which card do you want to use?"))
        self.list = QListWidget()
        self.list.setAccessibleName(self._("ID cards"))
        self.list.setAccessibleDescription(
            self._("The ID cards in your readers. Use the arrow keys to choose one.")
        )
        for choice in choices:
            if not isinstance(choice, dict):
                raise RequestError("each choice must be an object")
            text = " - ".join(
                str(choice[k]) for k in ("cardType", "holder", "reader") if choice.get(k)
            )
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, text)
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        caption.setBuddy(self.list)
        self.body.addWidget(caption)
        self.body.addWidget(self.list)
        self.cancel_button = self.add_button(
            self._("Cancel"), self._("Do not use any card."), self.reject
        )
        self.ok_button = self.add_button(
            self._("Use this card"), self._("Use the selected card."), self._accept
        )
        self.ok_button.setDefault(True)
        self.list.itemActivated.connect(lambda _item: self._accept())
        self.chain_tab_order(self.focus_chain())
        self.list.setFocus()

    def focus_chain(self) -> list[QWidget]:
        return [self.list, self.ok_button, self.cancel_button]

    def _accept(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.finish({"result": "ok", "index": row})


DIALOGS: dict[str, type[TrustedDialog]] = {
    "pin": PinDialog,
    "pin-change": PinChangeDialog,
    "pinpad": PinPadDialog,
    "card-wait": CardWaitDialog,
    "consent-site": SiteConsentDialog,
    "consent-identity": IdentityConsentDialog,
    "consent-certificate": CertificateConsentDialog,
    "choose-card": ChooseCardDialog,
}


def create_dialog(request: dict[str, Any]) -> TrustedDialog:
    """Build (not show) the dialog for ``request``; raises RequestError when malformed."""
    kind = request.get("type")
    if kind not in DIALOGS:
        raise RequestError(f"unknown dialog type {kind!r}")
    return DIALOGS[str(kind)](request)

