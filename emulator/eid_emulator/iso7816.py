"""ISO 7816 building blocks shared by every virtual card (Belgian, IDEMIA, Thales).

* :class:`Apdu`: a parsed command APDU (cases 1 to 4, short lengths);
* :class:`CardError`: a command ends with this status word;
* :class:`Node`: a DF or EF of a card's file tree;
* :class:`CardFaults`: faults a test injects (a status word, garbage, a removal), consumed
  in order by the commands they match.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from eid_emulator.vpcd import REMOVE

__all__ = ["SW_OK", "Apdu", "CardError", "CardFaults", "FaultAction", "FaultRule", "Node",
           "sw_bytes"]

SW_OK = 0x9000


def sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class CardError(Exception):
    """Internal: a command ends with this status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: absent; 256 for 00
    has_lc: bool

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        if len(raw) < 4:
            raise CardError(0x6700)
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2, b"", None, False)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", body[0] or 256, False)
        lc = body[0]
        if lc == 0 or len(body) not in (1 + lc, 2 + lc):
            raise CardError(0x6700)
        le = body[1 + lc] or 256 if len(body) == 2 + lc else None
        return cls(cla, ins, p1, p2, body[1 : 1 + lc], le, True)


@dataclass
class Node:
    """A DF or EF of the card's file tree."""

    fid: int
    content: bytes | None = None  # None for a DF
    aid: bytes | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    @property
    def is_df(self) -> bool:
        return self.content is None

    def add(self, child: Node) -> Node:
        child.parent = self
        self.children.append(child)
        return child

    def child(self, fid: int) -> Node | None:
        return next((c for c in self.children if c.fid == fid), None)

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()


class FaultAction(enum.Enum):
    STATUS = "status"  # answer a given status word (no data)
    GARBLE = "garble"  # answer meaningless bytes
    REMOVE = "remove"  # the card leaves the reader


@dataclass
class FaultRule:
    action: FaultAction
    count: int = 1
    ins: int | None = None  # only commands with this INS (None: any command)
    sw: int = 0x6F00
    payload: bytes = b"\xde\xad\xbe\xef\x13"


class CardFaults:
    """Faults to inject, consumed in order by the commands they match.

    In-process (``VirtualConnection``) a REMOVE fault answers nothing, which the
    connection reports as a removed card. Through vpcd, install :meth:`vpcd_hook` as
    ``VpcdCard.fault_hook`` so that REMOVE really pulls the card out of the reader.
    """

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def fail_next(self, sw: int, count: int = 1, ins: int | None = None) -> None:
        self._add(FaultRule(FaultAction.STATUS, count, ins, sw=sw))

    def garble_next(self, count: int = 1, ins: int | None = None,
                    payload: bytes = b"\xde\xad\xbe\xef\x13") -> None:
        self._add(FaultRule(FaultAction.GARBLE, count, ins, payload=payload))

    def remove_next(self, ins: int | None = None) -> None:
        self._add(FaultRule(FaultAction.REMOVE, 1, ins))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(r.count for r in self._rules)

    def _add(self, rule: FaultRule) -> None:
        if rule.count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._rules.append(rule)

    def take(self, apdu: bytes) -> FaultRule | None:
        """The first rule matching this command, consuming one use of it."""
        ins = apdu[1] if len(apdu) > 1 else None
        with self._lock:
            for rule in self._rules:
                if rule.ins is None or rule.ins == ins:
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def answer(self, rule: FaultRule) -> bytes | object:
        if rule.action is FaultAction.STATUS:
            return rule.sw.to_bytes(2, "big")
        if rule.action is FaultAction.GARBLE:
            return rule.payload
        return REMOVE

    def vpcd_hook(self, apdu: bytes) -> bytes | object | None:
        """A ``VpcdCard.fault_hook``."""
        rule = self.take(apdu)
        return None if rule is None else self.answer(rule)
