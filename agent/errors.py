"""The agent's error tree. Only the edges (CLI, WebSocket, tray) turn these into words.

AgentError
 ├── CardError                     something went wrong talking to a card
 │    ├── ApduError                 the card answered an unexpected status word (.sw);
 │    │                             defined in agent.smartcard.apdu, beside the status words
 │    ├── CardRemovedError          the card left the reader mid-operation
 │    ├── CardCommunicationError    transport failure (reader gone, pcscd down)
 │    ├── UnsupportedCardError      a card we recognise but cannot drive, or do not know
 │    └── BadResponseError          the card answered bytes we cannot parse
 ├── PinError
 │    ├── InvalidPinError           wrong PIN (.tries_left)
 │    ├── PinBlockedError           no tries left
 │    ├── PinFormatError            the PIN does not fit the card's rules (not sent)
 │    ├── PinChangeRequiredError    the PIN is still the initial one: change it first
 │    ├── PinPadTimeoutError        nobody typed on the PIN pad in time
 │    └── PinPadCancelledError      the user pressed cancel on the PIN pad
 ├── NoReaderError / NoCardError
 ├── NotSupportedError             the card cannot do what was asked
 ├── InvalidArgumentError          a request parameter is malformed (also a ValueError)
 ├── CertificateNotFoundError      no card holds the certificate a request names
 ├── UserCancelledError / UserTimeoutError
 ├── OriginNotAllowedError
 └── BusyError
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of all errors the agent raises on purpose."""


class CardError(AgentError):
    pass


class CardRemovedError(CardError):
    pass


class CardCommunicationError(CardError):
    pass


class UnsupportedCardError(CardError):
    pass


class BadResponseError(CardError):
    pass


class PinError(AgentError):
    pass


class InvalidPinError(PinError):
    def __init__(self, tries_left: int, pin_name: str = "PIN") -> None:
        self.tries_left = tries_left
        self.pin_name = pin_name
        super().__init__(f"wrong {pin_name}, {tries_left} tries left")


class PinBlockedError(PinError):
    def __init__(self, pin_name: str = "PIN") -> None:
        self.pin_name = pin_name
        super().__init__(f"{pin_name} is blocked")


class PinFormatError(PinError):
    pass


class PinChangeRequiredError(PinError):
    """The card says this PIN is still its initial one (EstEID 2025): change it first.

    The agent refuses to use such a PIN, as Web eID does; ``changePin`` is the way out.
    """

    def __init__(self, pin_name: str, message: str | None = None) -> None:
        self.pin_name = pin_name
        super().__init__(
            message or f"{pin_name} has not been changed yet: change {pin_name} first, then try again"
        )


class PinPadTimeoutError(PinError):
    pass


class PinPadCancelledError(PinError):
    pass


class NoReaderError(AgentError):
    pass


class NoCardError(AgentError):
    pass


class NotSupportedError(AgentError):
    pass


class InvalidArgumentError(AgentError, ValueError):
    """A request parameter is malformed (a short nonce, a hash of the wrong length, ...)."""


class CertificateNotFoundError(AgentError):
    """No card in any reader holds the certificate the request names."""


class UserCancelledError(AgentError):
    pass


class UserTimeoutError(AgentError):
    pass


class OriginNotAllowedError(AgentError):
    pass


class BusyError(AgentError):
    pass
