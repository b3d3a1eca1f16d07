"""The reader backend on pcscd: one worker thread owns every PC/SC call.

While idle the worker blocks in ``SCardGetStatusChange`` on all readers and the PnP
pseudo-reader (reader added/removed), with no timeout: no periodic wake-ups. A job
submitted with :meth:`PcscBackend.run` wakes it with ``SCardCancel``; the job runs on the
worker inside one card transaction, then the worker goes back to waiting.

``SCardCancel`` is lost when it arrives before the wait is registered in pcscd, so a tiny
waker thread repeats it until the worker confirms it woke up. When pcscd goes away (it
was restarted, or the Windows service stopped with the last reader) the context is
released and re-established; only in that state does the worker retry on a timer,
because there is nothing to block on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from smartcard import scard

from agent.errors import AgentError, CardCommunicationError, NoReaderError
from agent.pcsc.connection import (
    PNP_NOTIFICATION,
    SERVICE_GONE,
    PcscConnection,
    PcscContext,
    _feature_request_code,
    error_message,
)
from agent.smartcard.apdu import SmartCardConnection
from agent.smartcard.backend import EventCallback, EventKind, ReaderEvent, ReaderInfo
from agent.smartcard.pinpad import pinpad_features

logger = logging.getLogger(__name__)

T = TypeVar("T")

@dataclasses.dataclass(frozen=True)
class _Job:
    reader: str  # "" for a job that needs no card
    job: Callable[[SmartCardConnection], Any]
    future: concurrent.futures.Future[Any]


_STOP = object()
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


class PcscBackend:
    """:class:`~agent.smartcard.backend.ReaderBackend` on the PC/SC resource manager."""

    def __init__(self, *, ignore_readers: tuple[str, ...] = ("Windows Hello for Business",)) -> None:
        self._ignore = ignore_readers
        self._context = PcscContext()
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._readers: dict[str, ReaderInfo] = {}
        self._states: dict[str, int] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._on_event: EventCallback | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._service_up = False
        # waker protocol: _blocking and _wait_gen are guarded by _wait_cond
        self._wait_cond = threading.Condition(threading.Lock())
        self._blocking = False
        self._wait_gen = 0
        self._wake = threading.Event()
        self._waker: threading.Thread | None = None
        self.wakeups = 0  # how often the worker returned from its wait (for benchmarks)

    # -- public API -------------------------------------------------------------------
    def start(self, on_event: EventCallback | None = None, timeout: float = 10.0) -> None:
        if self._thread is not None:
            return
        self._on_event = on_event
        self._thread = threading.Thread(target=self._worker, name="pcsc-worker", daemon=True)
        self._waker = threading.Thread(target=self._waker_loop, name="pcsc-waker", daemon=True)
        self._thread.start()
        self._waker.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._jobs.put(_STOP)
        self._request_wake()
        self._thread.join(timeout=10)
        self._wake.set()  # let the waker see _stopping
        if self._waker is not None:
            self._waker.join(timeout=2)
        self._thread = self._waker = None

    def readers(self) -> list[ReaderInfo]:
        with self._lock:
            return list(self._readers.values())

    @property
    def service_available(self) -> bool:
        return self._service_up

    def run(
        self, reader: str, job: Callable[[SmartCardConnection], T]
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._thread is None or self._stopping.is_set():
            future.set_exception(CardCommunicationError("the reader backend is not running"))
            return future
        self._jobs.put(_Job(reader, job, future))
        self._request_wake()
        return future

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn()`` on the worker with no card connection (e.g. diagnostics)."""
        return self.run("", lambda _conn: fn())

    # -- waking the worker ------------------------------------------------------------
    def _request_wake(self) -> None:
        with self._wait_cond:
            if self._blocking:
                self._wake.set()

    def _waker_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._wait_cond:
                generation = self._wait_gen
                delay = 0.001
                # Repeat the cancel until this very wait has returned: a cancel that
                # reaches pcscd before the wait is registered there is lost.
                while self._blocking and self._wait_gen == generation:
                    self._context.cancel()
                    self._wait_cond.wait(delay)
                    delay = min(delay * 2, 0.05)

    # -- the worker -------------------------------------------------------------------
    def _worker(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self._context.establish()
                if not self._service_up:
                    self._service_up = True
                    attempt = 0
                    logger.info("connected to the smart-card service")
                self._refresh_readers()
                self._ready.set()
                while not self._stopping.is_set():
                    if self._drain_jobs():
                        continue
                    self._wait_for_change()
            except _ServiceGone as exc:
                self._service_lost(str(exc))
            except CardCommunicationError as exc:
                self._service_lost(str(exc))
            if self._stopping.is_set():
                break
            # The service is down: nothing to block on. Retry on a short backoff, and keep
            # answering jobs (with an error) meanwhile.
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            self._ready.set()
            self._sleep_answering_jobs(delay)
        self._fail_pending(CardCommunicationError("the reader backend stopped"))
        self._context.release()

    def _sleep_answering_jobs(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                item = self._jobs.get(timeout=left)
            except queue.Empty:
                return
            if not isinstance(item, _Job):
                return
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(
                    CardCommunicationError("the smart-card service (pcscd) is not running")
                )

    def _fail_pending(self, error: Exception) -> None:
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    def _drain_jobs(self) -> bool:
        ran = False
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return ran
            if not isinstance(item, _Job):
                return True
            ran = True
            self._run_job(item.reader, item.job, item.future)

    def _run_job(
        self,
        reader: str,
        job: Callable[[SmartCardConnection], Any],
        future: concurrent.futures.Future[Any],
    ) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            if reader == "":
                future.set_result(job(None))  # type: ignore[arg-type]
                return
            with self._lock:
                known = reader in self._readers
            if not known:
                raise NoReaderError(f"no reader named {reader!r}")
            connection = PcscConnection(self._context, reader)
            try:
                with connection.transaction():
                    result = job(connection)
            finally:
                connection.close()
            future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            if isinstance(exc, CardCommunicationError) and not self._context.is_valid():
                future.set_exception(exc)
                raise _ServiceGone(str(exc)) from exc
            future.set_exception(exc)

    def _wait_for_change(self) -> None:
        names = list(self._states)
        states = [(name, self._states[name]) for name in names]
        states.append((PNP_NOTIFICATION, self._pnp_state))
        handle = self._context.establish()
        with self._wait_cond:
            if not self._jobs.empty():
                return
            self._blocking = True
        try:
            hresult, new_states = scard.SCardGetStatusChange(handle, scard.INFINITE, states)
        finally:
            with self._wait_cond:
                self._blocking = False
                self._wait_gen += 1
                self._wait_cond.notify_all()
        self.wakeups += 1
        if hresult in (scard.SCARD_E_CANCELLED, scard.SCARD_E_TIMEOUT):
            return
        if hresult in SERVICE_GONE or hresult == scard.SCARD_E_UNKNOWN_READER:
            if hresult == scard.SCARD_E_UNKNOWN_READER:
                self._refresh_readers()
                return
            raise _ServiceGone(error_message(hresult))
        if hresult != scard.SCARD_S_SUCCESS:
            logger.warning("SCardGetStatusChange: %s", error_message(hresult))
            raise _ServiceGone(error_message(hresult))
        now = time.monotonic()
        rescan = False
        for name, state, atr in new_states:
            if name == PNP_NOTIFICATION:
                if state & scard.SCARD_STATE_CHANGED:
                    rescan = True
                self._pnp_state = state & ~scard.SCARD_STATE_CHANGED
                continue
            if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                rescan = True
            self._apply_state(name, state, bytes(atr), now)
        if rescan:
            self._refresh_readers()

    def _apply_state(self, name: str, state: int, atr: bytes, now: float) -> None:
        previous = self._states.get(name, scard.SCARD_STATE_UNAWARE)
        self._states[name] = state & ~scard.SCARD_STATE_CHANGED
        present = bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_MUTE
        with self._lock:
            old = self._readers.get(name)
            if old is None:
                return
            was_present = old.card_present
            # Same presence but the event counter moved: the card was swapped in between.
            swapped = (
                present and was_present and (state >> 16) != (previous >> 16) and old.atr != atr
            )
            self._readers[name] = ReaderInfo(
                name=name, card_present=present, atr=atr if present else None, pinpad=old.pinpad
            )
        if was_present and (not present or swapped):
            self._emit(ReaderEvent(EventKind.CARD_REMOVED, name, None, now))
        if present and (not was_present or swapped):
            self._emit(ReaderEvent(EventKind.CARD_INSERTED, name, atr, now))

    def _refresh_readers(self) -> None:
        names = [n for n in self._context.reader_names() if not any(i in n for i in self._ignore)]
        now = time.monotonic()
        with self._lock:
            current = set(self._readers)
        for gone in sorted(current - set(names)):
            with self._lock:
                info = self._readers.pop(gone)
            self._states.pop(gone, None)
            if info.card_present:
                self._emit(ReaderEvent(EventKind.CARD_REMOVED, gone, None, now))
            self._emit(ReaderEvent(EventKind.READER_REMOVED, gone, None, now))
        added = [n for n in names if n not in current]
        for name in added:
            pinpad = self._probe_pinpad(name)
            with self._lock:
                self._readers[name] = ReaderInfo(name=name, card_present=False, pinpad=pinpad)
            self._states[name] = scard.SCARD_STATE_UNAWARE
            self._emit(ReaderEvent(EventKind.READER_ADDED, name, None, now))
        if added:
            # Learn the card state of new readers at once (no wait).
            handle = self._context.establish()
            hresult, states = scard.SCardGetStatusChange(
                handle, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in added]
            )
            if hresult == scard.SCARD_S_SUCCESS:
                for name, state, atr in states:
                    self._apply_state(name, state, bytes(atr), now)

    def _probe_pinpad(self, reader: str) -> Any:
        handle = self._context.establish()
        hresult, card, _proto = scard.SCardConnect(handle, reader, scard.SCARD_SHARE_DIRECT, 0)
        if hresult != scard.SCARD_S_SUCCESS:
            return None
        try:
            hresult, response = scard.SCardControl(card, _feature_request_code(), [])
            if hresult != scard.SCARD_S_SUCCESS:
                return None
            return pinpad_features(bytes(response))
        except AgentError:
            return None
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)

    def _service_lost(self, why: str) -> None:
        if self._service_up:
            logger.warning("lost the smart-card service: %s", why)
        self._service_up = False
        self._context.release()
        now = time.monotonic()
        with self._lock:
            gone = list(self._readers.values())
            self._readers.clear()
        self._states.clear()
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        for info in gone:
            if info.card_present:
                self._emit(ReaderEvent(EventKind.CARD_REMOVED, info.name, None, now))
            self._emit(ReaderEvent(EventKind.READER_REMOVED, info.name, None, now))

    def _emit(self, event: ReaderEvent) -> None:
        logger.info("%s %s", event.kind.value, event.reader)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - a listener must not kill the worker
                logger.exception("reader event listener failed")


class _ServiceGone(Exception):
    pass
