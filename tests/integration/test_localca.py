"""The local CA for wss://: its constraints, that its private key is gone after issuing the
leaf, the leaf key's permissions, renewal, trust in a throwaway NSS database (certutil and
vfychain, i.e. NSS's own path validation), and TLS verification by Python's ssl."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.tls import localca, truststore

needs_certutil = pytest.mark.skipif(not shutil.which("certutil"), reason="libnss3-tools missing")


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_ca_is_name_constrained_with_pathlen_0(tmp_path: Path) -> None:
    tls = localca.ensure(tmp_path)
    ca = tls.ca
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    names = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert names.critical
    assert names.value.excluded_subtrees is None
    assert set(names.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature

    leaf = tls.leaf
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    }
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == dt.timedelta(days=localca.LEAF_DAYS)


def test_ca_private_key_is_dropped_and_written_nowhere(tmp_path: Path, monkeypatch) -> None:
    made: list[ec.EllipticCurvePrivateKey] = []
    real = ec.generate_private_key

    def recording(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        key = real(curve)
        made.append(key)
        return key

    monkeypatch.setattr(localca.ec, "generate_private_key", recording)
    tls = localca.ensure(tmp_path)
    (ca_index,) = [i for i, k in enumerate(made) if _spki(k.public_key()) == _spki(tls.ca.public_key())]
    assert len(made) == 2
    # Referenced only by the list `made` and getrefcount's own argument: nothing in the
    # agent (module, LocalTls, a cache, a traceback) still holds the CA key.
    # (Counted outside `assert`: pytest's rewriting keeps its own reference to operands.)
    references = sys.getrefcount(made[ca_index])
    assert references == 2
    del made[:]

    private_keys = []
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            private_keys.append((path, serialization.load_pem_private_key(data, None)))
        else:  # DER would not say so: try that too
            try:
                private_keys.append((path, serialization.load_der_private_key(data, None)))
            except (ValueError, TypeError):
                pass
    assert [p for p, _ in private_keys] == [tls.files.key]
    assert _spki(private_keys[0][1].public_key()) == _spki(tls.leaf.public_key())
    assert _spki(private_keys[0][1].public_key()) != _spki(tls.ca.public_key())
    if sys.platform != "win32":  # Windows: %APPDATA% is the user's own by its ACL
        assert stat.S_IMODE(tls.files.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(tls.files.folder.stat().st_mode) == 0o700


def test_loaded_when_valid_renewed_near_expiry_or_broken(tmp_path: Path) -> None:
    first = localca.ensure(tmp_path)
    assert first.created and first.replaced_ca is None
    again = localca.ensure(tmp_path)
    assert not again.created and again.ca_fingerprint == first.ca_fingerprint

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=localca.LEAF_DAYS - 29)
    renewed = localca.ensure(tmp_path, now=later)
    assert renewed.created
    assert renewed.replaced_ca is not None
    assert renewed.replaced_ca.fingerprint(renewed.ca.signature_hash_algorithm) == \
        first.ca.fingerprint(first.ca.signature_hash_algorithm)  # type: ignore[arg-type]
    assert renewed.ca_fingerprint != first.ca_fingerprint
    assert renewed.ca.subject != first.ca.subject  # NSS keeps them apart
    assert renewed.leaf.not_valid_after_utc > later + dt.timedelta(days=300)

    not_yet = dt.datetime.now(dt.UTC) + dt.timedelta(days=localca.LEAF_DAYS - 31)
    assert not localca.ensure(tmp_path, now=not_yet).created

    renewed.files.key.write_bytes(b"garbage")
    assert localca.ensure(tmp_path).created


def test_python_tls_client_trusts_the_leaf_through_the_ca_only(tmp_path: Path) -> None:
    tls = localca.ensure(tmp_path)
    server_ctx = tls.context()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    trusting = ssl.create_default_context(cafile=str(tls.files.ca))
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                trusting.wrap_socket(raw, server_hostname=name) as client:
            assert client.recv(2) == b"ok"
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    listener.close()


@needs_certutil
def test_nss_trust_insert_verify_swap_and_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    profile = home / ".mozilla" / "firefox" / "abcd.default-esr"
    profile.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{profile}"], check=True)
    tls = localca.ensure(tmp_path / "config")
    record = truststore.install_for_user(tls, home=home)
    chromium = home / ".pki" / "nssdb"
    assert record.nss == [str(chromium), str(profile)]
    assert truststore.read_record(tls.files).fingerprint == tls.ca_fingerprint
    for db in (chromium, profile):
        assert truststore.nss_has(db, truststore.nickname(tls))
        # NSS's own path validation of the leaf for a TLS server, with the db as trust store.
        chain = subprocess.run(
            ["vfychain", "-d", f"sql:{db}", "-u", "1", "-a", str(tls.files.cert)],
            capture_output=True, text=True,
        )
        assert chain.returncode == 0 and "Chain is good!" in chain.stderr, chain.stderr
        # Only a certificate went in: the database holds no private key at all.
        keys = subprocess.run(["certutil", "-K", "-d", f"sql:{db}"], capture_output=True, text=True)
        assert "no keys found" in (keys.stdout + keys.stderr).lower(), keys.stdout + keys.stderr

    # A leaf for another name, signed by a CA with the same constraints, is refused by NSS.
    # (Proves the constraint is enforced by the browsers' library, not just written.)
    outsider = _constrained_ca_with_leaf_for(tmp_path / "outsider", "portal.example")
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{profile}", "-n", "outsider CA", "-t", "C,,",
         "-i", str(outsider[0])], check=True,
    )
    refused = subprocess.run(
        ["vfychain", "-d", f"sql:{profile}", "-u", "1", "-a", str(outsider[1])],
        capture_output=True, text=True,
    )
    assert refused.returncode != 0 and "Chain is good!" not in refused.stderr
    assert "ERROR -8080" in refused.stderr  # SEC_ERROR_CERT_NOT_IN_NAME_SPACE

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=localca.LEAF_DAYS - 1)
    renewed = localca.ensure(tmp_path / "config", now=later)
    truststore.install_for_user(renewed, home=home)
    for db in (chromium, profile):
        assert truststore.nss_has(db, truststore.nickname(renewed))
        assert not truststore.nss_has(db, truststore.nickname(tls))

    removed = truststore.uninstall(renewed.files, home=home)
    assert len(removed) == 2
    for db in (chromium, profile):
        assert not truststore.nss_has(db, truststore.nickname(renewed))
    assert not renewed.files.folder.exists()


def _constrained_ca_with_leaf_for(folder: Path, dns_name: str) -> tuple[Path, Path]:
    """A CA built like ours but issuing a leaf for ``dns_name`` (the test keeps the key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outsider CA")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.NameConstraints([x509.DNSName("localhost")], None), critical=True)
        .sign(key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_path, leaf_path = folder / "ca.pem", folder / "leaf.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ca_path, leaf_path


def test_running_listener_picks_up_a_renewed_certificate(tmp_path: Path) -> None:
    from agent.app.serve import renew_tls

    tls = localca.ensure(tmp_path)
    context = tls.context()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:  # the test closed the listener
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    look = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    look.check_hostname = False
    look.verify_mode = ssl.CERT_NONE  # we compare the certificate served, byte for byte

    def served() -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                look.wrap_socket(raw) as client:
            client.recv(2)
            return client.getpeercert(binary_form=True) or b""

    der = serialization.Encoding.DER
    assert served() == tls.leaf.public_bytes(der)
    assert renew_tls(tmp_path, context, "none") is None  # not due: nothing changes
    assert served() == tls.leaf.public_bytes(der)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=localca.LEAF_DAYS - 10)
    renewed = renew_tls(tmp_path, context, "none", now=later)  # made by prepare-certificate
    assert renewed is not None
    assert served() == renewed.leaf.der != tls.leaf.public_bytes(der)
    assert renewed.ca_fingerprint != tls.ca_fingerprint
    listener.close()


SYSTEM_SCRIPT = r"""
set -e
bundle=/etc/ssl/certs/ca-certificates.crt
mount --bind "$WORK/certs" /etc/ssl/certs
mount --bind "$WORK/anchors" /usr/local/share/ca-certificates
"$PY" -m agent install-certificate --system --config-dir "$WORK/config" > "$WORK/install.out"
openssl verify -purpose sslserver -CAfile $bundle "$WORK/config/tls/cert.pem" \
    > "$WORK/verify-before.out" 2>&1 || true
"$PY" -m agent uninstall-certificate --system --config-dir "$WORK/config" > "$WORK/uninstall.out"
ls /usr/local/share/ca-certificates > "$WORK/anchors-after.out"
openssl verify -purpose sslserver -CAfile $bundle "$WORK/cert-copy.pem" \
    > "$WORK/verify-after.out" 2>&1 || true
"""


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and shutil.which("unshare")
         and shutil.which("update-ca-certificates") and shutil.which("openssl")
         and hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="needs root, unshare, update-ca-certificates and openssl (Linux)",
)
def test_system_bundle_install_and_removal_in_a_private_mount_namespace(tmp_path: Path) -> None:
    """`install-certificate --system` as the installer runs it, on copies of /etc/ssl/certs and
    /usr/local/share/ca-certificates bind-mounted in a private mount namespace (the machine's
    own bundle is never touched)."""
    shutil.copytree("/etc/ssl/certs", tmp_path / "certs", symlinks=True)
    shutil.copytree("/usr/local/share/ca-certificates", tmp_path / "anchors", symlinks=True)
    tls = localca.ensure(tmp_path / "config")
    (tmp_path / "cert-copy.pem").write_bytes(tls.files.cert.read_bytes())
    env = dict(os.environ, WORK=str(tmp_path), PY=sys.executable, HOME=str(tmp_path / "home"))
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", SYSTEM_SCRIPT],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = {name: (tmp_path / f"{name}.out").read_text() for name in (
        "install", "verify-before", "uninstall", "anchors-after", "verify-after")}
    assert tls.ca_fingerprint in out["install"]
    assert out["verify-before"].strip().endswith(": OK"), out["verify-before"]
    assert "eid-agent-local-ca.crt" in out["uninstall"]
    assert "eid-agent-local-ca.crt" not in out["anchors-after"]
    assert ": OK" not in out["verify-after"], out["verify-after"]
    # the machine's own bundle did not get our CA
    assert tls.ca.public_bytes(serialization.Encoding.PEM) not in Path(
        "/etc/ssl/certs/ca-certificates.crt").read_bytes()


def test_served_reads_what_localca_makes_and_refuses_what_it_must_not_serve(tmp_path: Path) -> None:
    """The resident's standard-library reader (agent.tls.served) against localca's own load."""
    from agent.tls import served

    tls = localca.ensure(tmp_path / "a")
    got = served.read(tls.files)
    assert got is not None
    assert got.ca_fingerprint == tls.ca_fingerprint
    assert got.expires == tls.expires
    assert got.leaf.der == tls.leaf.public_bytes(serialization.Encoding.DER)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=localca.LEAF_DAYS - 29)
    assert served.read(tls.files, now=later) is None  # due for renewal
    other = localca.ensure(tmp_path / "b")
    (tmp_path / "a" / "tls" / "key.pem").write_bytes(other.files.key.read_bytes())
    assert served.read(tls.files) is None  # a key that is not the leaf's
    assert localca.load(tls.files) is None  # the same verdict as localca's
    (tmp_path / "a" / "tls" / "cert.pem").write_bytes(other.files.cert.read_bytes())
    assert served.read(tls.files) is None  # a leaf some other CA issued
    assert localca.load(tls.files) is None
    (tmp_path / "a" / "tls" / "ca.pem").write_text("not a certificate")
    assert served.read(tls.files) is None
    assert served.read(served.TlsFiles(tmp_path / "missing")) is None


def test_prepare_certificate_makes_a_set_only_when_asked_or_due(tmp_path: Path) -> None:
    from agent.app.serve import make_certificate
    from agent.tls import served

    files = served.TlsFiles.in_config_dir(tmp_path)
    assert served.read(files) is None
    assert make_certificate(tmp_path, "none")  # what serve runs at a first start
    first = served.read(files)
    assert first is not None
    assert make_certificate(tmp_path, "none")  # --renew: a new CA, as when due
    second = served.read(files)
    assert second is not None and second.ca_fingerprint != first.ca_fingerprint
