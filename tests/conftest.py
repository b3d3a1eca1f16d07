"""Shared fixtures. Tests that go through PC/SC use a private pcscd (its own mount
namespace, its own vpcd ports), never the system one: see emulator/eid_emulator/pcscd.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from eid_emulator.base import VirtualCard
from eid_emulator.pcscd import VPCD_DRIVER, PrivatePcscd
from eid_emulator.vpcd import VpcdCard

READER_0 = "Virtual PCD 00 00"
READER_1 = "Virtual PCD 00 01"
READERS = (READER_0, READER_1)


def _pcsc_available() -> str | None:
    if shutil.which("pcscd") is None or not os.path.exists(VPCD_DRIVER):
        return "pcscd/vsmartcard-vpcd not installed (run: make setup)"
    if os.geteuid() != 0:
        return "a private pcscd needs root (unshare -m)"
    return None


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PrivatePcscd]:
    """A private pcscd with two vpcd readers; this process's libpcsclite uses it."""
    why = _pcsc_available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    daemon = PrivatePcscd()
    daemon.start()
    daemon.use()
    try:
        yield daemon
    finally:
        daemon.stop()


VpcdFactory = Callable[..., VpcdCard]


@pytest.fixture
def vpcd(pcscd: PrivatePcscd) -> Iterator[VpcdFactory]:
    """Insert virtual cards into the private pcscd's readers: ``vpcd(card, slot=0)``.

    Waits until pcscd reports the card present; removes every card at teardown.
    """
    from agent.pcsc import wait_for_card

    inserted: list[VpcdCard] = []

    def insert(card: VirtualCard, slot: int = 0, latency: float = 0.0) -> VpcdCard:
        served = VpcdCard(card, port=pcscd.ports[slot], latency=latency)
        served.insert()
        inserted.append(served)
        wait_for_card(READERS[slot], present=True, timeout=10)
        return served

    yield insert
    for served in inserted:
        if served.inserted:
            served.remove()
    for slot in range(2):
        try:
            wait_for_card(READERS[slot], present=False, timeout=5)
        except Exception:  # noqa: BLE001 - best effort between tests
            pass
