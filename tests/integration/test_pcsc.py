"""The PC/SC layer on a real pcscd with vsmartcard's vpcd and the virtual test card."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest
from eid_emulator.testcard import GET_DATA_VALUE, TEST_AID, TEST_ATR, TEST_FILE, TestCard

from agent.errors import CardRemovedError, NoCardError, NoReaderError
from agent.pcsc import PcscBackend, connect, list_readers, wait_for_card
from agent.smartcard.apdu import CardChannel
from agent.smartcard.backend import EventKind, ReaderEvent
from tests.conftest import READER_0, READER_1

logger = logging.getLogger(__name__)
pytestmark = pytest.mark.pcsc


def test_lists_both_virtual_readers(pcscd, vpcd) -> None:
    vpcd(TestCard(), slot=1)
    readers = {r.name: r for r in list_readers()}
    assert set(readers) == {READER_0, READER_1}
    assert not readers[READER_0].card_present
    assert readers[READER_1].card_present
    assert readers[READER_1].atr == TEST_ATR
    assert readers[READER_1].pinpad is None  # vpcd has no PIN pad


def test_transmit_get_response_and_wrong_le(vpcd) -> None:
    card = TestCard()
    vpcd(card)
    with connect(READER_0) as conn:
        assert conn.atr == TEST_ATR
        channel = CardChannel(conn)
        with conn.transaction():
            channel.send_apdu(0, 0xA4, 0x04, 0x00, TEST_AID)
            # 61xx: the card holds the answer until GET RESPONSE
            assert channel.send_apdu(0, 0xCA, 0, 0, le=256) == GET_DATA_VALUE
            # 6Cxx: Le 256 is too large 20 bytes before the end; re-sent with Le 20
            assert channel.send_apdu(0, 0xB0, 0x01, 0x18, le=256) == TEST_FILE[280:]
            echo = channel.send_apdu(0x80, 0x10, 0, 0, b"abc")
    assert echo == b"cba"
    sent = [c.hex() for c in card.commands]
    assert "00c000001b" in sent  # GET RESPONSE with the announced length
    assert sent[-4:-1] == ["00b0011800", "00b0011814", "8010000003616263"]


def test_no_card_and_unknown_reader(pcscd) -> None:
    with pytest.raises(NoCardError):
        connect(READER_0)
    with pytest.raises(NoReaderError):
        connect("No Such Reader 00 00")


def test_card_removed_mid_operation_is_typed(vpcd) -> None:
    served = vpcd(TestCard())
    with connect(READER_0) as conn:
        channel = CardChannel(conn)
        channel.send_apdu(0, 0xA4, 0x04, 0x00, TEST_AID)
        served.remove()
        wait_for_card(READER_0, present=False)
        with pytest.raises(CardRemovedError):
            channel.send_apdu(0, 0xB0, 0, 0, le=16)


def test_card_pulled_during_a_command_is_card_removed(vpcd) -> None:
    """vpcd reports the pulled card as a communication error; the agent still says "removed"."""
    from eid_emulator.vpcd import REMOVE

    served = vpcd(TestCard())
    with connect(READER_0) as conn:
        channel = CardChannel(conn)
        channel.send_apdu(0, 0xA4, 0x04, 0x00, TEST_AID)
        served.fault_hook = lambda apdu: REMOVE if apdu[1] == 0xB0 else None
        with pytest.raises(CardRemovedError):
            channel.send_apdu(0, 0xB0, 0, 0, le=16)


class Events:
    def __init__(self) -> None:
        self.items: list[ReaderEvent] = []
        self.cond = threading.Condition()

    def __call__(self, event: ReaderEvent) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait_for(self, kind: EventKind, reader: str, timeout: float = 10) -> ReaderEvent:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.items:
                    if event.kind == kind and event.reader == reader:
                        self.items.remove(event)
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} for {reader}; saw {self.items}")
                self.cond.wait(left)


@pytest.fixture
def backend(pcscd):
    events = Events()
    backend = PcscBackend()
    backend.start(events)
    yield backend, events
    backend.stop()


def test_backend_reports_insertion_and_removal(backend, vpcd, pcscd) -> None:
    backend, events = backend
    assert {r.name for r in backend.readers()} == {READER_0, READER_1}
    start = time.monotonic()
    served = vpcd(TestCard(), slot=1)
    inserted = events.wait_for(EventKind.CARD_INSERTED, READER_1)
    assert inserted.atr == TEST_ATR
    logger.warning("insertion seen %.1f ms after the vpcd connect", (inserted.timestamp - start) * 1e3)
    assert [r.card_present for r in backend.readers() if r.name == READER_1] == [True]
    start = time.monotonic()
    served.remove()
    removed = events.wait_for(EventKind.CARD_REMOVED, READER_1)
    logger.warning("removal seen %.1f ms after the vpcd disconnect", (removed.timestamp - start) * 1e3)
    assert [r.card_present for r in backend.readers() if r.name == READER_1] == [False]


def test_backend_runs_jobs_in_a_transaction_on_one_worker(backend, vpcd) -> None:
    backend, _events = backend
    card = TestCard()
    vpcd(card)
    threads: set[str] = set()

    def job(conn):
        threads.add(threading.current_thread().name)
        channel = CardChannel(conn)
        channel.send_apdu(0, 0xA4, 0x04, 0x00, TEST_AID)
        return channel.send_apdu(0, 0xCA, 0, 0, le=256)

    futures = [backend.run(READER_0, job) for _ in range(20)]
    assert [f.result(10) for f in futures] == [GET_DATA_VALUE] * 20
    assert threads == {"pcsc-worker"}
    with pytest.raises(NoCardError):
        backend.run(READER_1, job).result(10)
    with pytest.raises(NoReaderError):
        backend.run("Missing Reader", job).result(10)


def test_backend_idles_without_waking_up(backend, vpcd) -> None:
    backend, _events = backend
    vpcd(TestCard())
    backend.run(READER_0, lambda conn: None).result(10)
    time.sleep(0.2)
    before = backend.wakeups
    time.sleep(1.5)
    assert backend.wakeups == before, "the worker must block in SCardGetStatusChange, not poll"


def test_backend_survives_a_pcscd_restart(backend, vpcd, pcscd) -> None:
    backend, events = backend
    card = TestCard()
    served = vpcd(card)
    events.wait_for(EventKind.CARD_INSERTED, READER_0)
    served.remove()
    pcscd.restart_daemon()
    events.wait_for(EventKind.READER_REMOVED, READER_0)
    events.wait_for(EventKind.READER_ADDED, READER_0)
    served.insert()
    events.wait_for(EventKind.CARD_INSERTED, READER_0)
    result = backend.run(READER_0, lambda conn: CardChannel(conn).send_apdu(0, 0xCA, 0, 0, le=256))
    assert result.result(10) == GET_DATA_VALUE


def test_backend_answers_jobs_while_pcscd_is_down(backend, pcscd) -> None:
    backend, events = backend
    pcscd.stop_daemon()
    try:
        events.wait_for(EventKind.READER_REMOVED, READER_0)
        with pytest.raises(Exception) as info:
            backend.run(READER_0, lambda conn: None).result(10)
        assert "not running" in str(info.value) or "reader" in str(info.value)
    finally:
        pcscd.start_daemon()
    events.wait_for(EventKind.READER_ADDED, READER_0)


def test_cli_readers_shows_the_virtual_card(pcscd, vpcd) -> None:
    vpcd(TestCard())
    out = subprocess.run(
        [sys.executable, "-m", "agent", "readers"], env=pcscd.env(), capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout
    assert f"{READER_0}: card present, ATR {TEST_ATR.hex(' ').upper()}" in out
    assert f"{READER_1}: no card" in out
    diag = subprocess.run(
        [sys.executable, "-m", "agent", "diag"], env=pcscd.env(), capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout
    assert "pyscard" in diag and "pcsc-lite" in diag and READER_0 in diag


def test_backend_starts_and_serves_with_no_readers_at_all() -> None:
    """A pcscd with no reader: the worker blocks on the PnP notification, jobs get a typed error.

    Runs in a child process: libpcsclite reads its socket name once per process.
    """
    code = (
        "from eid_emulator.pcscd import PrivatePcscd\n"
        "from agent.errors import NoReaderError\n"
        "with PrivatePcscd(readers=False) as daemon:\n"
        "    daemon.use()\n"
        "    from agent.pcsc import PcscBackend, list_readers\n"
        "    assert list_readers() == []\n"
        "    backend = PcscBackend(); backend.start()\n"
        "    assert backend.readers() == [] and backend.service_available\n"
        "    try:\n"
        "        backend.run('Virtual PCD 00 00', lambda c: None).result(10)\n"
        "    except NoReaderError:\n"
        "        print('typed error')\n"
        "    backend.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "typed error" in out.stdout
