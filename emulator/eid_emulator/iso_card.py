"""The generic ISO 7816 card every virtual card is built on, and its ISO 7816-4 variant.

:class:`IsoCard` (the base of the Belgian, IDEMIA and Thales cards): the ATR, a file tree
and the current file, the command log (:attr:`IsoCard.commands`), injected faults
(:attr:`IsoCard.faults`, see :class:`~eid_emulator.iso7816.CardFaults`) and the dispatch
loop: every command is logged, may meet a fault, is checked (length ``6700``, class
``6E00``, instruction ``6D00``) and handed to the handler registered for its INS; a
:class:`~eid_emulator.iso7816.CardError` becomes its status word. Data kept for GET
RESPONSE is dropped by any other command.

:class:`IsoPinCard` (IDEMIA and Thales): PINs as ASCII padded to 12 bytes, and these
ISO 7816-4 commands:

* SELECT: ``P1`` 00 (MF), 01 (DF under the current DF), 02 (EF under the current DF),
  04 (by AID), 08 (path from the MF), 09 (path from the current DF); ``P2`` 0C answers no
  data, 04 the FCP (``62``: size in ``80`` or ``81``, ``82`` descriptor, ``83`` FID), 00
  the FCI (``6F`` with the AID, for AIDs);
* READ BINARY (answers what is left when Le runs past the end), GET RESPONSE;
* VERIFY (``Lc`` 0: status probe; ``P1`` FF without data: back to "not verified"),
  CHANGE REFERENCE DATA, RESET RETRY COUNTER (after the
  PUK was verified: ``P1`` 02 with the new PIN, 03 without), each on PINs that are global
  or local to a DF;
* case-4 answers: the data with ``9000`` when Le covers it, ``61xx`` (GET RESPONSE) when
  no Le was sent, ``6Cxx`` when Le is too short.

Subclasses add the card's own commands (GET DATA, MSE, PSO, INTERNAL AUTHENTICATE).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from eid_emulator.base import VirtualCard
from eid_emulator.iso7816 import SW_OK, Apdu, CardError, CardFaults, Node, sw_bytes

logger = logging.getLogger(__name__)

__all__ = ["IsoCard", "IsoPinCard", "PinState", "CardError", "Apdu", "Node", "sw_bytes"]

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_GET_RESPONSE = 0xC0
INS_VERIFY = 0x20
INS_CHANGE = 0x24
INS_RESET_RETRY_COUNTER = 0x2C

Handler = Callable[[Apdu], bytes]


class IsoCard(VirtualCard):
    """The generic ISO 7816 card: files, command log, faults, dispatch (module docstring).

    Subclasses register their commands in :attr:`_handlers` (INS -> (CLA, handler)) and
    may hook :meth:`_note` (every command that passed the length check) and
    :meth:`_reset_security` (reset: the card forgets what was verified).
    """

    classes: frozenset[int] = frozenset({0x00})  # the CLA bytes the card answers at all

    def __init__(self, atr: bytes, mf: Node) -> None:
        self._atr = atr
        self._mf = mf
        self.faults = CardFaults()
        self.commands: list[bytes] = []
        self._lock = threading.RLock()
        self._handlers: dict[int, tuple[int, Handler]] = {}
        self.reset()

    @property
    def atr(self) -> bytes:
        return self._atr

    def reset(self) -> None:
        self._current: Node = self._mf
        self._pending = b""
        self._reset_security()

    def _reset_security(self) -> None:  # noqa: B027 - optional hook
        """Subclasses forget their security state here."""

    def _note(self, ins: int) -> None:  # noqa: B027 - optional hook
        """Every command (after the length check), before its class is checked."""

    # ---- dispatch

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            self.commands.append(apdu)
            rule = self.faults.take(apdu)
            if rule is not None:
                answer = self.faults.answer(rule)
                return answer if isinstance(answer, bytes) else b""
            try:
                return self._dispatch(apdu)
            except CardError as exc:
                return sw_bytes(exc.sw)

    def _dispatch(self, raw: bytes) -> bytes:
        if len(raw) < 4:
            raise CardError(0x6700)
        cla, ins = raw[0], raw[1]
        if ins != INS_GET_RESPONSE:
            self._pending = b""
        self._note(ins)
        if cla not in self.classes:
            raise CardError(0x6E00)
        handler = self._handlers.get(ins)
        if handler is None:
            raise CardError(0x6D00)
        expected_cla, fn = handler
        if cla != expected_cla:
            raise CardError(0x6E00)
        return fn(Apdu.parse(raw))

    def respond(self, data: bytes, le: int | None) -> bytes:
        """A case-4 answer: the data with ``9000`` when Le covers it, ``61xx`` (GET
        RESPONSE) when no Le was sent, ``6Cxx`` when Le is too short."""
        if le is None:
            self._pending = data
            return sw_bytes(0x6100 | (min(len(data), 256) & 0xFF))
        if le < len(data) and le != 256:
            raise CardError(0x6C00 | (len(data) & 0xFF))
        return data + sw_bytes(SW_OK)

    # ---- files

    def current_df(self) -> Node:
        node = self._current
        return node if node.is_df else node.parent or self._mf

    def in_df(self, fid: int) -> bool:
        """Is the current DF ``fid`` (or below it)?"""
        node: Node | None = self.current_df()
        while node is not None:
            if node.fid == fid:
                return True
            node = node.parent
        return False


@dataclass
class PinState:
    """One PIN of a virtual card (mutable: tries, verified, changed)."""

    name: str
    value: str
    max_tries: int = 3
    min_length: int = 4
    local_df: int | None = None  # FID of the DF the PIN lives in; None: global
    changed: bool = True  # False: still the initial PIN (Thales DF2F = 00)
    tries: int = -1
    verified: bool = False

    def __post_init__(self) -> None:
        if self.tries < 0:
            self.tries = self.max_tries

    @property
    def blocked(self) -> bool:
        return self.tries == 0


class IsoPinCard(IsoCard):
    """An ISO 7816-4 card with PINs padded to 12 bytes (IDEMIA, Thales): module docstring."""

    size_tag = 0x80

    def __init__(self, atr: bytes, mf: Node, pins: dict[int, PinState], pad: int,
                 puk_reference: int | None) -> None:
        self.pins = pins
        self.pad = pad
        self.puk_reference = puk_reference
        super().__init__(atr, mf)
        self._handlers.update({
            INS_SELECT: (0x00, self._select),
            INS_READ_BINARY: (0x00, self._read_binary),
            INS_GET_RESPONSE: (0x00, self._get_response),
            INS_VERIFY: (0x00, self._verify),
            INS_CHANGE: (0x00, self._change),
            INS_RESET_RETRY_COUNTER: (0x00, self._reset_retry_counter),
        })

    def reset(self) -> None:
        for pin in self.pins.values():
            pin.verified = False
        super().reset()

    # ---- files

    def _walk(self, start: Node, data: bytes) -> Node:
        if not data or len(data) % 2:
            raise CardError(0x6A87)
        node = start
        for i in range(0, len(data), 2):
            fid = int.from_bytes(data[i : i + 2], "big")
            if fid == 0x3F00 and i == 0:
                node = self._mf
                continue
            child = node.child(fid) if node.is_df else None
            if child is None:
                raise CardError(0x6A82)
            node = child
        return node

    def fcp(self, node: Node) -> bytes:
        fid = node.fid.to_bytes(2, "big")
        if node.is_df:
            body = bytes.fromhex("820138") + b"\x83\x02" + fid
        else:
            size = len(node.content or b"").to_bytes(2, "big")
            body = bytes((self.size_tag, 0x02)) + size + bytes.fromhex("820101") + b"\x83\x02" + fid
        return b"\x62" + bytes((len(body),)) + body

    def _select(self, apdu: Apdu) -> bytes:
        p1, data = apdu.p1, apdu.data
        if p1 == 0x00:
            if data not in (b"", b"\x3f\x00"):
                raise CardError(0x6A82)
            target = self._mf
        elif p1 in (0x01, 0x02):
            if len(data) != 2:
                raise CardError(0x6A87)
            target = self._walk(self.current_df(), data)
            if target.is_df != (p1 == 0x01):
                raise CardError(0x6A82)
        elif p1 == 0x04:
            target = self._select_aid(data)
        elif p1 == 0x08:
            target = self._walk(self._mf, data)
        elif p1 == 0x09:
            target = self._walk(self.current_df(), data)
        else:
            raise CardError(0x6A86)
        self._current = target
        if apdu.p2 == 0x0C:
            return sw_bytes(SW_OK)
        if apdu.p2 == 0x04:
            return self.respond(self.fcp(target), apdu.le)
        if apdu.p2 == 0x00:
            aid = target.aid or b""
            return self.respond(b"\x6f" + bytes((len(aid) + 2, 0x84, len(aid))) + aid, apdu.le)
        raise CardError(0x6A86)

    def _select_aid(self, data: bytes) -> Node:
        for node in self._mf.walk():
            if node.aid is not None and data == node.aid:
                return node
        raise CardError(0x6A82)

    def _read_binary(self, apdu: Apdu) -> bytes:
        if self._current.is_df:
            raise CardError(0x6986)
        if apdu.p1 & 0x80:
            raise CardError(0x6A86)
        content = self._current.content or b""
        offset = apdu.p1 << 8 | apdu.p2
        if offset >= len(content):
            raise CardError(0x6B00)
        return content[offset : offset + (apdu.le or 256)] + sw_bytes(SW_OK)

    def _get_response(self, apdu: Apdu) -> bytes:
        if not self._pending:
            raise CardError(0x6985)
        le = apdu.le or 256
        out, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return out + sw_bytes(0x6100 | (min(len(self._pending), 256) & 0xFF))
        return out + sw_bytes(SW_OK)

    # ---- PINs

    def pin_state(self, reference: int) -> PinState:
        """The PIN with this reference, if reachable from the current DF."""
        pin = self.pins.get(reference)
        if pin is None:
            raise CardError(0x6A88)
        if pin.local_df is not None and not self.in_df(pin.local_df):
            raise CardError(0x6A88)
        return pin

    def _decode_pin(self, block: bytes) -> str:
        if len(block) != 12:
            raise CardError(0x6700)
        digits = block.rstrip(bytes((self.pad,)))
        if not digits or not digits.isdigit():
            raise CardError(0x6A80)
        return digits.decode()

    def _tries_sw(self, pin: PinState) -> int:
        return 0x63C0 | pin.tries

    def _check(self, pin: PinState, value: str) -> None:
        """Compare a presented PIN, spending a try when it is wrong."""
        if pin.blocked:
            raise CardError(0x6983)
        if value != pin.value:
            pin.tries -= 1
            pin.verified = False
            logger.debug("wrong %s, %d tries left", pin.name, pin.tries)
            raise CardError(self._tries_sw(pin))
        pin.tries = pin.max_tries
        pin.verified = True

    def _verify(self, apdu: Apdu) -> bytes:
        if apdu.p1 == 0xFF and not apdu.has_lc and self.verify_resets_status:
            # ISO 7816-4: VERIFY P1=FF resets the PIN's verification status (log off).
            self.pin_state(apdu.p2).verified = False
            self._reset_security()
            return sw_bytes(SW_OK)
        if apdu.p1 != 0x00:
            raise CardError(0x6A86)
        pin = self.pin_state(apdu.p2)
        if not apdu.has_lc:
            if pin.blocked:
                raise CardError(0x6983)
            return sw_bytes(SW_OK if pin.verified else self._tries_sw(pin))
        self._check(pin, self._decode_pin(apdu.data))
        return sw_bytes(SW_OK)

    def _change(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00:
            raise CardError(0x6A86)
        pin = self.pin_state(apdu.p2)
        if apdu.p2 == self.puk_reference and not self.puk_changeable:
            raise CardError(0x6985)
        if len(apdu.data) != 24:
            raise CardError(0x6700)
        old, new = self._decode_pin(apdu.data[:12]), self._decode_pin(apdu.data[12:])
        if len(new) < pin.min_length:
            raise CardError(0x6A80)
        self._check(pin, old)
        pin.value = new
        pin.changed = True
        return sw_bytes(SW_OK)

    puk_changeable = True
    # VERIFY P1=FF (log off) is understood; False: answered 6A86, as by a card without it.
    verify_resets_status = True

    def _reset_retry_counter(self, apdu: Apdu) -> bytes:
        if self.puk_reference is None or apdu.p1 not in (0x02, 0x03):
            raise CardError(0x6A86)
        puk = self.pins[self.puk_reference]
        if not puk.verified:
            raise CardError(0x6982)
        pin = self.pin_state(apdu.p2)
        if apdu.p1 == 0x02:
            new = self._decode_pin(apdu.data)
            if len(new) < pin.min_length:
                raise CardError(0x6A80)
            pin.value = new
        pin.tries = pin.max_tries
        puk.verified = False
        return sw_bytes(SW_OK)

    # ---- for tests

    def tries_left(self, name: str) -> int:
        return next(p.tries for p in self.pins.values() if p.name == name)

    def pin_value(self, name: str) -> str:
        return next(p.value for p in self.pins.values() if p.name == name)
