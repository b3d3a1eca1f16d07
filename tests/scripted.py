"""A scripted SmartCardConnection for byte-level driver tests.

Each step says which command APDU the driver must send next and what the "card" answers.
Anything else (a different APDU, one too many, one too few at the end) fails the test.

    conn = ScriptedConnection([
        Step("00A4040C02 3F00", sw=0x9000),
        Step("00B0000004", "01020304"),
    ])
    ...
    conn.assert_done()
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.smartcard.apdu import SmartCardConnection


def hexbytes(value: bytes | str) -> bytes:
    """Bytes from bytes or a hex string with optional spaces."""
    if isinstance(value, bytes):
        return value
    return bytes.fromhex(value.replace(" ", ""))


@dataclass(frozen=True)
class Step:
    """One expected command and the card's answer."""

    command: bytes | str
    data: bytes | str = b""
    sw: int = 0x9000

    @property
    def command_bytes(self) -> bytes:
        return hexbytes(self.command)

    @property
    def data_bytes(self) -> bytes:
        return hexbytes(self.data)


class ScriptedConnection(SmartCardConnection):
    """Replays a script of :class:`Step`; asserts the exact bytes of every command sent.

    ``control_responses`` are returned by :meth:`control` in order (each the raw reply,
    e.g. data + SW for a PIN-pad VERIFY); the calls are recorded in ``controls``.
    """

    def __init__(
        self,
        steps: list[Step] | None = None,
        *,
        atr: bytes = b"",
        reader: str = "Scripted reader 00 00",
        pinpad: object | None = None,
        control_responses: list[bytes] | None = None,
    ) -> None:
        self.steps: list[Step] = list(steps or [])
        self.atr = atr
        self.reader = reader
        self.pinpad = pinpad
        self.sent: list[bytes] = []
        self.controls: list[tuple[int, bytes]] = []
        self.control_responses = list(control_responses or [])
        self.closed = False

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        index = len(self.sent)
        self.sent.append(apdu)
        if not self.steps:
            raise AssertionError(f"unexpected APDU #{index}: {apdu.hex().upper()} (script done)")
        step = self.steps.pop(0)
        if apdu != step.command_bytes:
            raise AssertionError(
                f"APDU #{index}: sent {apdu.hex().upper()}, expected {step.command_bytes.hex().upper()}"
            )
        return step.data_bytes, step.sw

    def control(self, code: int, data: bytes = b"") -> bytes:
        self.controls.append((code, data))
        if not self.control_responses:
            raise AssertionError(f"unexpected control({code:#x})")
        return self.control_responses.pop(0)

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        """Every scripted step was used."""
        if self.steps:
            left = ", ".join(step.command_bytes.hex().upper() for step in self.steps)
            raise AssertionError(f"{len(self.steps)} scripted APDUs not sent: {left}")
