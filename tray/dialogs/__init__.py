"""The trusted dialogs: one small Qt program the agent starts on demand (like pinentry).

Run as ``python -m tray.dialogs``. It reads one JSON request per line on stdin and writes
one JSON reply per line on stdout; closing stdin ends it. Requests carry an ``id`` and a
``type``:

- ``pin``: ``origin, operation, pinName, triesLeft, holder, cardType, reader, detail,
  minLength, maxLength, timeout, lang`` -> ``{"result": "ok", "pin": "1234"}``
- ``pin-change``: same fields -> ``{"result": "ok", "pin": old, "newPin": new}``
- ``pinpad``: a notice ("enter your PIN on the reader") with a countdown; it stays until a
  ``cancel`` message closes it, or the user presses Cancel (``{"result": "cancel"}``).
- ``card-wait``: ``origin, operation, reason (no-reader | no-card | unrecognised |
  wrong-card), holder`` - "insert your ID card" with a countdown; closed like ``pinpad``.
- ``consent-site``: ``origin`` -> ``{"result": "ok", "decision": "allow-once" |
  "allow-always" | "deny"}``
- ``consent-identity``: ``origin, holder`` -> ``{"result": "ok", "decision": "allow-once" | "deny"}``
- ``consent-certificate``: ``origin, holder, subjectId`` (the national number) ->
  ``{"result": "ok", "decision": "allow-once" | "allow-always" | "deny"}``
- ``choose-card``: ``origin, operation, choices: [{reader, cardType, holder, serial}]``
  -> ``{"result": "ok", "index": 0}``
- ``cancel``: ``{"type": "cancel", "id": 1}`` closes dialog 1 (reply ``"result": "closed"``).

Every dialog may also answer ``cancel`` (Cancel, Escape, window closed), ``timeout`` (its
own countdown ran out) or ``error`` (``message``: the request was malformed).

Consent dialogs cannot be clicked through: Deny is the default and has the focus, and
their buttons ignore every input for about a second after the dialog appears or regains
focus (``widgets.ConsentDialog``). The PIN dialog keeps Enter = OK once a PIN of the
minimum length is typed; it cannot be confirmed empty.
The PIN travels only in the reply line on stdout; nothing is ever logged about it.
"""

from __future__ import annotations

REQUEST_TYPES = (
    "pin",
    "pin-change",
    "pinpad",
    "card-wait",
    "consent-site",
    "consent-identity",
    "consent-certificate",
    "choose-card",
)

__all__ = ["REQUEST_TYPES"]
