"""The Web eID contract is written once (eid_validator.contract) and both sides keep to it.

The agent makes tokens, the validator checks them: an origin, nonce, signed-data, algorithm
or hash rule that the two spell differently is a login that fails (or passes) for no reason.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eid_validator import contract
from eid_validator.algorithms import Algorithm, check_algorithm_fits_key, hash_for_name
from eid_validator.authtoken import check_origin as validator_check_origin
from eid_validator.authtoken import signed_data as validator_signed_data
from eid_validator.errors import AlgorithmNotAllowedError

from agent.core import token
from agent.core.origin import normalize_origin
from agent.errors import InvalidArgumentError, OriginNotAllowedError
from agent.smartcard.hashes import WEB_EID_HASHES

ROOT = Path(__file__).resolve().parents[2]

ORIGINS = [
    "https://example.org", "https://a.example:8443", "https://Example.ORG", "https://a.example:443",
    "https://a.example/", "https://a.example/path", "https://a.example?q", "https://a.example#f",
    "https://user@a.example", "http://example.org", "http://localhost:3000", "http://[::1]",
    "http://127.0.0.1:80", "wss://a.example", "null", "", "https://a.example:0",
    "https://a.example:65536", "https://xn--bcher-kva.example", "https://my_host.example",
    "https://a.example\n", " https://a.example", "https://" + "a" * 250 + ".example",
    "https://[::1]:8443", "https://-a.example",
]


def _agent(origin: str) -> str | None:
    try:
        return normalize_origin(origin)
    except OriginNotAllowedError:
        return None


def _validator(origin: str) -> str | None:
    try:
        return validator_check_origin(origin, allow_http_localhost=True)
    except ValueError:
        return None


@pytest.mark.parametrize("origin", ORIGINS)
def test_agent_and_validator_agree_on_origins(origin: str) -> None:
    """The validator accepts exactly the canonical forms of what the agent accepts."""
    agent = _agent(origin)
    if agent is None:
        assert _validator(origin) is None
    else:
        assert _validator(agent) == agent
        assert (_validator(origin) is not None) == (agent == origin)


def test_production_validator_refuses_http_even_on_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        validator_check_origin("http://localhost:3000")


NONCES = [
    base64.b64encode(bytes(32)).decode(), base64.urlsafe_b64encode(bytes(33)).decode(),
    "A" * 43, "A" * 44, "A" * 128, "A" * 129, "A" * 44 + "\n", "A" * 43 + "!", "A" * 44 + "===",
    "A" * 60 + "=", None, 44,
]


@pytest.mark.parametrize("nonce", NONCES)
def test_agent_uses_the_contract_nonce_rule(nonce: object) -> None:
    try:
        expected: object = contract.check_nonce(nonce)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(InvalidArgumentError):
            token.validate_nonce(nonce)
    else:
        assert token.validate_nonce(nonce) == nonce


def test_nonce_rule_is_a_full_match() -> None:
    good = base64.b64encode(bytes(32)).decode()
    assert contract.check_nonce(good) == good
    for bad in (good + "\n", "\n" + good, good + " "):
        with pytest.raises(ValueError):
            contract.check_nonce(bad)


@pytest.mark.parametrize("bits", [256, 384, 512])
def test_signed_data_is_the_same_on_both_sides(bits: int) -> None:
    origin, nonce = "https://portal.example", base64.b64encode(bytes(range(32))).decode()
    hash_name = f"SHA-{bits}"
    for family in ("ES", "RS", "PS"):
        assert validator_signed_data(Algorithm.parse(f"{family}{bits}"), origin, nonce) == \
            token.signed_data(origin, nonce, hash_name)
    assert len(token.signed_data(origin, nonce, hash_name)) == 2 * bits // 8


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_token_algorithm_fits_the_validator_for_each_curve(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    name, hash_name = contract.token_algorithm_for("EC", key.curve.name)
    check_algorithm_fits_key(Algorithm.parse(name), key)
    assert Algorithm.parse(name).hash_name == hash_name
    for other in contract.ALGORITHMS - {name}:
        with pytest.raises(AlgorithmNotAllowedError):
            check_algorithm_fits_key(Algorithm.parse(other), key)


def test_rsa_and_unknown_curves() -> None:
    assert contract.token_algorithm_for("RSA") == ("RS256", "SHA-256")
    assert contract.token_algorithm_for("RSA", rsa_pss=True) == ("PS256", "SHA-256")
    with pytest.raises(ValueError, match="secp256k1"):
        contract.token_algorithm_for("EC", ec.SECP256K1().name)
    with pytest.raises(ValueError, match="1.3.101.112"):
        contract.token_algorithm_for("1.3.101.112")  # Ed25519, as certinfo names it


def test_contract_hash_names_are_hashlib_and_cryptography_names() -> None:
    """The validator makes its hash objects from these names (``hash_for_name``)."""
    for web_eid_name, hashlib_name in contract.HASH_FUNCTIONS.items():
        assert hashlib.new(hashlib_name).name == hashlib_name
        assert hash_for_name(web_eid_name).digest_size == hashlib.new(hashlib_name).digest_size
        assert hash_for_name(web_eid_name).name.replace("-", "_") == hashlib_name
        assert len(contract.digest(web_eid_name, b"")) == hashlib.new(hashlib_name).digest_size


def test_agent_hash_table_is_the_contract_table() -> None:
    assert set(WEB_EID_HASHES) == set(contract.HASH_FUNCTIONS)
    for name, entry in WEB_EID_HASHES.items():
        assert entry.hashlib_name == contract.HASH_FUNCTIONS[name]
    with pytest.raises(InvalidArgumentError):
        token.digest("sha256", b"")  # spelling is exact, as in web-eid.js
    assert token.TOKEN_FORMAT == contract.TOKEN_FORMAT
    assert contract.TOKEN_FORMAT.startswith(contract.FORMAT_PREFIX)


# The rules' defining literals: if one shows up outside the contract, the rule is being
# written a second time.
RULE_LITERALS = [r"\"secp384r1\": \(\"ES384\"", r"NONCE_M(IN|AX)_LENGTH(: Final)?\s*=", r"A-Za-z0-9\+/_-",
                 r"\"sha3_384\"", r"web-eid:1\.0\"", r"_DEFAULT_PORTS(: Final)?\s*="]


def test_rules_are_written_once() -> None:
    sources = [p for folder in ("agent", "validator/eid_validator") for p in (ROOT / folder).rglob("*.py")]
    offenders = []
    for path in sources:
        if path.name == "contract.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {rule}" for rule in RULE_LITERALS if re.search(rule, text)]
    assert offenders == []


def test_contract_rule_literals_are_real() -> None:
    """The probe above would find a copy: the contract itself matches every literal."""
    text = (ROOT / "validator/eid_validator/contract.py").read_text(encoding="utf-8")
    assert all(re.search(rule, text) for rule in RULE_LITERALS)

