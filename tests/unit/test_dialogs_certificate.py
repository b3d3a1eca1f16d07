"""The certificate-consent dialog (issue 13): it says whose certificate and which national
number the site gets, starts on Deny, and is a guarded ConsentDialog (no input for a second)."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel  # noqa: E402

from tests.unit import test_dialogs  # noqa: E402
from tests.unit.test_dialogs import request_for, wait_released  # noqa: E402
from tray.dialogs import REQUEST_TYPES  # noqa: E402

qapp = test_dialogs.qapp
show = test_dialogs.show

NATIONAL_NUMBER = "85073003328"


def _texts(shown) -> str:  # type: ignore[no-untyped-def]
    return " ".join(label.text() for label in shown.dialog.findChildren(QLabel))


def test_the_dialog_names_the_holder_and_the_national_number(show) -> None:  # type: ignore[no-untyped-def]
    assert "consent-certificate" in REQUEST_TYPES
    for lang, word in (("en", "national number"), ("nl", "rijksregisternummer"),
                       ("fr", "registre national"), ("de", "Nationalregisternummer")):
        shown = show(request_for("consent-certificate", lang, subjectId=NATIONAL_NUMBER))
        text = _texts(shown)
        assert NATIONAL_NUMBER in text and "Alice Specimen" in text
        assert word.lower() in text.lower(), (lang, text)


def test_focus_starts_on_deny_and_return_there_denies(show) -> None:  # type: ignore[no-untyped-def]
    shown = show(request_for("consent-certificate", subjectId=NATIONAL_NUMBER))
    wait_released(shown.dialog)
    assert QApplication.focusWidget() is shown.dialog.deny_button
    assert not shown.dialog.once_button.isDefault() and not shown.dialog.always_button.isDefault()
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    assert shown.replies == [{"result": "ok", "decision": "deny"}]


def test_always_is_a_choice(show) -> None:  # type: ignore[no-untyped-def]
    shown = show(request_for("consent-certificate", subjectId=NATIONAL_NUMBER))
    shown.dialog.always_button.click()
    assert shown.replies == []  # within the input delay: nothing
    wait_released(shown.dialog)
    shown.dialog.always_button.click()
    assert shown.replies == [{"result": "ok", "decision": "allow-always"}]
