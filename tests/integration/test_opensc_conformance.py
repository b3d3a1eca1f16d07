"""OpenSC against the virtual BELPIC card, through the real pcscd and vpcd.

What OpenSC 0.23 (Debian 12) does with each applet, as these tests pin down:

* both: ``opensc-tool`` sees the ATR and picks the "Belpic cards" driver;
  ``pkcs15-tool`` lists the four CDF certificates (not RRN) and reads each one back
  byte-exact; ``pkcs15-tool --change-pin`` sends CHANGE REFERENCE DATA; a wrong PIN at
  C_Login spends one try.
* 1.7: ``pkcs11-tool --sign`` with the authentication key (RSA PKCS#1 v1.5, algorithm 01
  with OpenSC's DigestInfo) works and verifies. The non-repudiation key (83) is refused by
  OpenSC itself: its belpic driver answers SC_ERROR_NOT_SUPPORTED from
  set_security_env for key 83 ("No GUI for NonRep key present"), C_SignFinal gives
  CKR_FUNCTION_NOT_SUPPORTED and no PSO reaches the card.
* 1.8: the keys are listed as EC keys (from the PrKDF), but the belpic driver registers
  only RSA-2048 for applet >= 0x17, so the token offers no ECDSA mechanism and
  ``pkcs11-tool --sign -m ECDSA`` fails with CKR_MECHANISM_INVALID before any APDU.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data

pytestmark = [pytest.mark.pcsc, pytest.mark.opensc]

PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
APPLETS = ("1.7", "1.8")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("beid-pki"))


@pytest.fixture(scope="module")
def card_data(pki: TestPki) -> dict:
    return {applet: make_card_data(pki, Holder(), applet) for applet in APPLETS}


@pytest.fixture
def run(pcscd, tmp_path: Path):  # a factory: run an OpenSC tool against the private pcscd
    env = {**pcscd.env(), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run_tool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                                cwd=tmp_path)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    return run_tool


def pso_commands(card: BeidCard) -> list[bytes]:
    return [c for c in card.commands if c[1:4] == b"\x2a\x9e\x9a"]


@pytest.mark.parametrize("applet", APPLETS)
def test_opensc_tool_sees_atr_and_belpic_driver(card_data: dict, vpcd, run, applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    vpcd(card)
    out = run("opensc-tool", "--atr", "--name").stdout
    assert card.atr.hex(":") in out.lower()
    assert "Belpic cards" in out


@pytest.mark.parametrize("applet", APPLETS)
def test_pkcs15_tool_lists_and_reads_certificates(card_data: dict, vpcd, run,
                                                  applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    vpcd(card)
    listing = run("pkcs15-tool", "--list-certificates").stdout
    labels = re.findall(r"X\.509 Certificate \[(.+?)\]", listing)
    assert labels == ["Authentication", "Signature", "CA", "Root"]
    paths = re.findall(r"Path\s*:\s*(\w+)", listing)
    assert paths == ["3f00df005038", "3f00df005039", "3f00df00503a", "3f00df00503b"]
    expected = {"02": card.data.auth_cert, "03": card.data.sign_cert,
                "04": card.data.ca_cert, "06": card.data.root_cert}
    for cert_id, der in expected.items():
        pem = run("pkcs15-tool", "--read-certificate", cert_id).stdout
        cert = x509.load_pem_x509_certificate(pem.encode())
        assert cert.public_bytes(serialization.Encoding.DER) == der


@pytest.mark.parametrize("applet", APPLETS)
def test_kids_card_without_signing_certificate(pki: TestPki, vpcd, run, applet: str) -> None:
    holder = Holder(given_names="Kid", national_number="18010112345",
                    has_signing_certificate=False)
    vpcd(BeidCard(applet, make_card_data(pki, holder, applet)))
    listing = run("pkcs15-tool", "--list-certificates").stdout
    assert re.findall(r"X\.509 Certificate \[(.+?)\]", listing) == [
        "Authentication", "CA", "Root"]


@pytest.mark.parametrize("applet", APPLETS)
def test_pkcs15_tool_change_pin(card_data: dict, vpcd, run, applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    vpcd(card)
    run("pkcs15-tool", "--change-pin", "--pin", "1234", "--new-pin", "5678")
    assert card.pin == "5678"
    assert any(c[:5] == bytes.fromhex("0024000110") for c in card.commands)


@pytest.mark.parametrize("applet", APPLETS)
def test_wrong_pin_at_login_spends_a_try(card_data: dict, vpcd, run, applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    vpcd(card)
    result = run("pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", "9999",
                 "--list-objects", check=False)
    assert result.returncode != 0
    assert "CKR_PIN_INCORRECT" in result.stdout + result.stderr
    assert card.tries_left == 2


def test_pkcs11_signs_with_the_17_authentication_key(card_data: dict, vpcd, run,
                                                     tmp_path: Path) -> None:
    card = BeidCard("1.7", card_data["1.7"])
    vpcd(card)
    message = tmp_path / "message.txt"
    message.write_bytes(b"signed through OpenSC's PKCS#11 module")
    signature = tmp_path / "signature.bin"
    run("pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", "1234", "--sign",
        "--id", "02", "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
        "--output-file", str(signature))
    cert = x509.load_der_x509_certificate(card.data.auth_cert)
    cert.public_key().verify(signature.read_bytes(), message.read_bytes(),
                             padding.PKCS1v15(), hashes.SHA256())
    # OpenSC uses MSE algorithm 01 (it sends the DigestInfo itself) with key 82.
    assert bytes.fromhex("002241B6050480018482") in card.commands
    assert len(pso_commands(card)) == 1


def test_opensc_refuses_the_17_non_repudiation_key(card_data: dict, vpcd, run,
                                                   tmp_path: Path) -> None:
    card = BeidCard("1.7", card_data["1.7"])
    vpcd(card)
    message = tmp_path / "message.txt"
    message.write_bytes(b"x")
    result = run("pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", "1234",
                 "--sign", "--id", "03", "--mechanism", "SHA256-RSA-PKCS",
                 "--input-file", str(message), "--output-file", str(tmp_path / "sig"),
                 check=False)
    assert result.returncode != 0
    assert "CKR_FUNCTION_NOT_SUPPORTED" in result.stdout + result.stderr
    assert bytes.fromhex("002241B6050480018483") in card.commands  # MSE reached the card
    assert pso_commands(card) == []  # but OpenSC stopped before signing


def test_opensc_has_no_ecdsa_for_the_18_card(card_data: dict, vpcd, run,
                                             tmp_path: Path) -> None:
    card = BeidCard("1.8", card_data["1.8"])
    vpcd(card)
    mechanisms = run("pkcs11-tool", "--module", PKCS11_MODULE, "--list-mechanisms").stdout
    assert "RSA-PKCS" in mechanisms and "ECDSA" not in mechanisms
    objects = run("pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", "1234",
                  "--list-objects").stdout
    assert "Private Key Object; EC" in objects
    message = tmp_path / "digest.bin"
    message.write_bytes(bytes(48))
    result = run("pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", "1234",
                 "--sign", "--id", "02", "--mechanism", "ECDSA", "--input-file",
                 str(message), "--output-file", str(tmp_path / "sig"), check=False)
    assert result.returncode != 0
    assert "CKR_MECHANISM_INVALID" in result.stdout + result.stderr
    assert pso_commands(card) == []


def test_fault_hook_removes_the_card_through_vpcd(card_data: dict, vpcd, run) -> None:
    card = BeidCard("1.8", card_data["1.8"])
    served = vpcd(card)
    served.fault_hook = card.faults.vpcd_hook
    card.faults.fail_next(0x6F00, ins=0xE4)  # GET CARD DATA fails once
    result = run("opensc-tool", "--name", check=False)
    assert "Belpic cards" not in result.stdout
    assert run("opensc-tool", "--name").stdout.strip().endswith("Belpic cards")
    card.faults.remove_next(ins=0xB0)  # the first READ BINARY pulls the card out
    result = run("pkcs15-tool", "--list-certificates", check=False)
    assert result.returncode != 0
    assert not served.inserted
