"""A fake AgentService/ClientSession implementing the core contract, for the ws-layer tests.

It records what the ws layer asks of it (prechecks, opened sessions, card accesses, closes)
so tests can prove that refused handshakes never reach ``open_client`` and that a
disconnect closes the session. Card methods can be scripted per test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.core.origin import normalize_origin
from agent.errors import InvalidPinError, OriginNotAllowedError, UserCancelledError

FAKE_PIN = "9731"  # what the fake user "types"; must never reach the socket
Script = Callable[["FakeSession", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class FakeService:
    blocked: set[str] = field(default_factory=set)  # machine policy refusals
    prechecked: list[str] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)
    scripts: dict[str, Script] = field(default_factory=dict)
    card_accesses: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def origin_precheck(self, origin: str) -> None:
        self.prechecked.append(origin)
        normalize_origin(origin)
        if origin in self.blocked:
            raise OriginNotAllowedError(f"{origin} is blocked by policy")

    def open_client(self, origin: str) -> FakeSession:
        session = FakeSession(self, origin)
        self.sessions.append(session)
        return session

    @property
    def opened(self) -> list[str]:
        return [session.origin for session in self.sessions]

    def fire(self, event: dict[str, Any]) -> None:
        """Deliver an event to every subscribed session, from a foreign thread."""
        with self.lock:
            callbacks = [s.callback for s in self.sessions if s.callback is not None]
        thread = threading.Thread(target=lambda: [cb(event) for cb in callbacks])
        thread.start()
        thread.join()


class FakeSession:
    def __init__(self, service: FakeService, origin: str) -> None:
        self.service = service
        self.origin = origin
        self.callback: Callable[[dict[str, Any]], None] | None = None
        self.closed = False
        self.cancelled = 0  # operations cancelled by close()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._closing = asyncio.Event()

    async def _card(self, method: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, kwargs))
        self.service.card_accesses.append((self.origin, method))
        script = self.service.scripts.get(method)
        if script is not None:
            return await script(self, kwargs)
        echo = {k: v.hex() if isinstance(v, bytes) else v for k, v in kwargs.items()}
        return {"method": method, "origin": self.origin, **echo}

    async def wait_until_closed(self) -> None:
        """For scripts: block like a PIN prompt until the page goes away."""
        try:
            await self._closing.wait()
        finally:
            self.cancelled += 1
        raise UserCancelledError("the page went away")

    async def status(self) -> dict[str, Any]:
        self.calls.append(("status", {}))
        return {"version": "0.1.0", "readers": [{"cardPresent": True}]}

    async def get_signing_certificate(self, **kwargs: Any) -> dict[str, Any]:
        return await self._card("get_signing_certificate", **kwargs)

    async def authenticate(self, challenge_nonce: str, **kwargs: Any) -> dict[str, Any]:
        return await self._card("authenticate", challenge_nonce=challenge_nonce, **kwargs)

    async def sign(self, certificate: bytes, hash: bytes, hash_function: str, **kwargs: Any) -> dict:  # noqa: A002
        return await self._card(
            "sign", certificate=certificate, hash=hash, hash_function=hash_function, **kwargs
        )

    async def read_identity(self, **kwargs: Any) -> dict[str, Any]:
        return await self._card("read_identity", **kwargs)

    async def pin_status(self, **kwargs: Any) -> dict[str, Any]:
        return await self._card("pin_status", **kwargs)

    async def change_pin(self, **kwargs: Any) -> dict[str, Any]:
        return await self._card("change_pin", **kwargs)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        with self.service.lock:
            self.callback = callback

    def unsubscribe(self) -> None:
        with self.service.lock:
            self.callback = None

    async def close(self) -> None:
        self.closed = True
        self.unsubscribe()
        self._closing.set()


async def wrong_pin(session: FakeSession, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A script: the fake user typed FAKE_PIN, the card said wrong PIN, 2 tries left."""
    assert FAKE_PIN  # the PIN exists inside the agent only
    raise InvalidPinError(2, "PIN")


async def block(session: FakeSession, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A script: wait like an open PIN dialog until the session is closed."""
    await session.wait_until_closed()
    return {}
