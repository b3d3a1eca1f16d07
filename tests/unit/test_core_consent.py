"""Consent that cannot be flooded (issue 13): one prompt per origin at a time, a denial
remembered for a while, prompts rate-limited, and the signing certificate (holder name and
national number) asked for each time unless the user chose "always" for the site.

The core runs on the in-process virtual backend with the Belgian virtual card; the user is
a gated interaction whose answers the test gives when it wants (the only fake part).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder

from agent.app.scripted import ScriptedInteraction
from agent.core import consent
from agent.core.interaction import ConsentDecision, ConsentKind, ConsentRequest
from agent.errors import OriginNotAllowedError, UserCancelledError
from tests import core_support
from tests.core_support import ORIGIN, OTHER_ORIGIN, READER_A, run, running_core, wire

user_env = core_support.user_env
pki = core_support.pki
data18 = core_support.data18

pytestmark = pytest.mark.usefixtures("user_env")


class Gated:
    """Wraps the core's interaction: consent prompts wait until the test answers them."""

    def __init__(self) -> None:
        self.asked: list[ConsentRequest] = []
        self.answers: asyncio.Queue[ConsentDecision] = asyncio.Queue()

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision:
        self.asked.append(request)
        return await self.answers.get()


def gate(interaction: ScriptedInteraction) -> Gated:
    gated = Gated()
    interaction.ask_consent = gated.ask_consent  # type: ignore[method-assign]
    return gated


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_sixty_concurrent_requests_from_one_origin_show_one_dialog(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({}, {READER_A: card}, identify_cards=False) as (
                service, interaction, _):
            gated = gate(interaction)
            sessions = [service.open_client(ORIGIN) for _ in range(60)]
            calls = [asyncio.create_task(s.get_signing_certificate()) for s in sessions]
            await until(lambda: service.consent.waiting(ORIGIN) == 60)
            assert len(gated.asked) == 1 and gated.asked[0].kind is ConsentKind.SITE
            gated.answers.put_nowait(ConsentDecision.DENY)
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, OriginNotAllowedError) for r in results), results
            assert len(gated.asked) == 1
            assert card.commands == []  # nothing reached the card
            # Remembered: a new connection of that origin is refused without a prompt.
            with pytest.raises(OriginNotAllowedError, match="less than 60 s ago"):
                await service.open_client(ORIGIN).get_signing_certificate()
            assert len(gated.asked) == 1
            # Another origin is asked as usual.
            other = asyncio.create_task(service.open_client(OTHER_ORIGIN).status())
            assert wire(await other) == {"version": service.config.version, "approved": False}

    run(scenario())


def test_sixty_concurrent_certificate_requests_share_each_answer(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({}, {READER_A: card}) as (service, interaction, _):
            gated = gate(interaction)
            sessions = [service.open_client(ORIGIN) for _ in range(60)]
            calls = [asyncio.create_task(s.get_signing_certificate()) for s in sessions]
            await until(lambda: service.consent.waiting(ORIGIN) == 60)
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)  # the site, for these pages
            await until(lambda: service.consent.waiting(ORIGIN) == 60 and len(gated.asked) == 2)
            assert [r.kind for r in gated.asked] == [ConsentKind.SITE, ConsentKind.CERTIFICATE]
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)  # the certificate, this time
            results = [wire(r) for r in await asyncio.gather(*calls)]
            assert {r["certificate"] for r in results} == {results[0]["certificate"]}
            assert len(gated.asked) == 2

    run(scenario())


def test_a_denial_is_remembered_for_a_while(
    data18: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent, "DENIAL_MEMORY", 0.3)

    async def scenario() -> None:
        async with running_core({}, {READER_A: BeidCard("1.8", data18)}) as (
                service, interaction, _):
            gated = gate(interaction)
            gated.answers.put_nowait(ConsentDecision.DENY)
            with pytest.raises(OriginNotAllowedError):
                await service.open_client(ORIGIN).get_signing_certificate()
            with pytest.raises(OriginNotAllowedError, match="moments ago|less than"):
                await service.open_client(ORIGIN).get_signing_certificate()
            assert len(gated.asked) == 1
            await asyncio.sleep(0.35)
            gated.answers.put_nowait(ConsentDecision.DENY)
            with pytest.raises(OriginNotAllowedError, match="did not allow"):
                await service.open_client(ORIGIN).get_signing_certificate()
            assert len(gated.asked) == 2  # asked again once the memory ran out

    run(scenario())


def test_prompts_are_rate_limited_per_origin(
    data18: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent, "MAX_PROMPTS", 3)

    async def scenario() -> None:
        async with running_core({}, {READER_A: BeidCard("1.8", data18)}) as (
                service, interaction, _):
            gated = gate(interaction)
            session = service.open_client(ORIGIN)
            for _ in range(3):  # the site once, then the certificate twice
                gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)
            await session.get_signing_certificate()
            await session.get_signing_certificate()
            with pytest.raises(UserCancelledError, match="try again later"):
                await session.get_signing_certificate()
            assert len(gated.asked) == 3
            # The limit is per origin: another site is still asked.
            gated.answers.put_nowait(ConsentDecision.DENY)
            with pytest.raises(OriginNotAllowedError):
                await service.open_client(OTHER_ORIGIN).get_signing_certificate()
            assert len(gated.asked) == 4

    run(scenario())


def test_the_certificate_is_asked_for_each_time_unless_always(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({}, {READER_A: card}) as (service, interaction, _):
            gated = gate(interaction)
            session = service.open_client(ORIGIN)
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)  # site
            gated.answers.put_nowait(ConsentDecision.DENY)  # certificate
            with pytest.raises(UserCancelledError, match="signing certificate"):
                await session.get_signing_certificate()
            asked = gated.asked[1]
            assert asked.kind is ConsentKind.CERTIFICATE
            holder = Holder()
            assert asked.subject_id == holder.national_number
            assert asked.holder is not None and holder.surname in asked.holder
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)  # site, new page
            session = service.open_client(ORIGIN)  # the denial is remembered per kind ...
            with pytest.raises(UserCancelledError, match="less than"):
                await session.get_signing_certificate()
            service.revoke_origin(ORIGIN)  # ... until the user forgets the site in the tray
            await asyncio.sleep(0)
            for _ in range(2):
                gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)
            session = service.open_client(ORIGIN)
            await session.get_signing_certificate()
            gated.answers.put_nowait(ConsentDecision.ALLOW_ALWAYS)
            await session.get_signing_certificate()  # asked again
            assert [r.kind for r in gated.asked[2:]] == [
                ConsentKind.SITE, ConsentKind.SITE, ConsentKind.CERTIFICATE,
                ConsentKind.CERTIFICATE]
            await session.get_signing_certificate()  # "always": not asked
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)  # site, new page
            await service.open_client(ORIGIN).get_signing_certificate()
            assert [r.kind for r in gated.asked[6:]] == [ConsentKind.SITE]
            assert service.approvals.is_approved(ORIGIN, ConsentKind.CERTIFICATE)
            assert not service.approvals.is_approved(ORIGIN, ConsentKind.SITE)

    run(scenario())


def test_an_unapproved_origin_learns_nothing_about_the_card(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({}, {READER_A: card}) as (service, interaction, backend):
            gated = gate(interaction)
            session = service.open_client(ORIGIN)
            events: list[Any] = []
            session.subscribe(events.append)
            status = wire(await session.status())
            assert status == {"version": service.config.version, "approved": False}
            backend.remove(READER_A).result()
            backend.insert(READER_A, card).result()
            await core_support.settle(service)
            assert events == []  # no events at all before approval
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)
            gated.answers.put_nowait(ConsentDecision.ALLOW_ONCE)
            await session.get_signing_certificate()
            status = wire(await session.status())
            assert status["approved"] is True
            assert status["readers"][0]["card"]["holder"]

    run(scenario())
