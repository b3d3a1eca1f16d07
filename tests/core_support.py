"""Helpers for the operations-core tests (tests/test_core_*.py): a tmp user environment,
the test PKI with Belgian virtual cards, a core on the in-process virtual backend, and
token verification with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from eid_emulator.backend import VirtualBackend
from eid_emulator.beid import BeidCard, BeidCardData
from eid_emulator.pki import Holder, TestPki, make_card_data

from agent.app.scripted import ScriptedInteraction
from agent.cards.common import CertificateCache
from agent.core import AgentConfig, AgentService
from agent.core.policy import MachinePolicy
from agent.core.values import CardEvent
from agent.smartcard.hashes import WEB_EID_HASHES
from agent.ws.messages import event_json, result_json

T = TypeVar("T")

ORIGIN = "https://portal.example.org"
OTHER_ORIGIN = "https://other.example.net"
NONCE = base64.b64encode(bytes(range(32))).decode()  # 44 characters
READER_A = "Virtual Reader A"
READER_B = "Virtual Reader B"
SECOND_HOLDER = Holder(
    given_names="Bob", surname="Tester", national_number="90010100123", card_number="592000000011"
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and XDG folders in tmp, no machine policy, scripted interaction enabled."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("EID_AGENT_POLICY_FILE", str(tmp_path / "no-policy.json"))
    monkeypatch.setenv("EID_AGENT_ALLOW_SCRIPTED", "1")
    return home


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("core-pki"))


@pytest.fixture(scope="session")
def data18(pki: TestPki) -> BeidCardData:
    return make_card_data(pki, applet="1.8")


@pytest.fixture(scope="session")
def data17(pki: TestPki) -> BeidCardData:
    return make_card_data(pki, applet="1.7")


@pytest.fixture(scope="session")
def data18_second(pki: TestPki) -> BeidCardData:
    return make_card_data(pki, SECOND_HOLDER, applet="1.8")


def make_config(**overrides: Any) -> AgentConfig:
    """The config for this (tmp) user with an empty machine policy unless given."""
    overrides.setdefault("policy", MachinePolicy())
    policy = overrides.pop("policy")
    return AgentConfig.load(policy=policy, **overrides)


@contextlib.asynccontextmanager
async def running_core(
    script: dict[str, Any],
    cards: dict[str, BeidCard] | None = None,
    *,
    on_request: Callable[[str, Any], None] | None = None,
    backend: Any = None,
    **config: Any,
) -> AsyncIterator[tuple[AgentService, ScriptedInteraction, Any]]:
    """A started core on a VirtualBackend holding ``cards`` (reader name -> card)."""
    interaction = ScriptedInteraction(script, on_request=on_request)
    if backend is None:
        backend = VirtualBackend()
        for reader, card in (cards or {}).items():
            backend.insert(reader, card).result()
    service = AgentService(
        backend, interaction, config=make_config(**config), card_cache=CertificateCache()
    )
    await service.start()
    try:
        yield service, interaction, backend
    finally:
        await service.stop()


async def settle(service: AgentService) -> None:
    """Let queued reader events be handled (the core processes them in order)."""
    for _ in range(50):
        await asyncio.sleep(0)
        if not service.events_pending():
            await asyncio.sleep(0.01)
            if not service.events_pending():
                return


def wire(value: Any) -> Any:
    """A core result or event in its wire form (what a page receives)."""
    if isinstance(value, CardEvent):
        return event_json(value)
    return result_json(value)


def verify_token(token: Any, origin: str, nonce: str) -> x509.Certificate:
    """Check a web-eid:1.0 token the way the Web eID validators do (signature part);
    ``token`` is the core's AuthToken or its wire form."""
    if not isinstance(token, dict):
        token = wire(token)
    assert token["format"] == "web-eid:1.0"
    certificate = x509.load_der_x509_certificate(base64.b64decode(token["unverifiedCertificate"]))
    hash_name = {"ES256": "SHA-256", "ES384": "SHA-384", "ES512": "SHA-512", "RS256": "SHA-256",
                 "PS256": "SHA-256"}[token["algorithm"]]
    algorithm = getattr(hashes, WEB_EID_HASHES[hash_name].hashlib_name.upper())()
    h = getattr(hashlib, hash_name.replace("-", "").lower())
    data = h(origin.encode()).digest() + h(nonce.encode()).digest()
    signature = base64.b64decode(token["signature"])
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        key.verify(der, data, ec.ECDSA(algorithm))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        pad = (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
               if token["algorithm"] == "PS256" else padding.PKCS1v15())
        key.verify(signature, data, pad, algorithm)
    return certificate


def verbs(card: BeidCard) -> list[int]:
    """The INS bytes the card received, in order."""
    return [apdu[1] for apdu in card.commands]
