"""Putting the agent's local CA (:mod:`agent.tls.localca`) into the trust stores browsers use,
and taking it out again.

- Linux, per user: every NSS database Chromium and Firefox read: ``~/.pki/nssdb`` (Chromium,
  Chrome, Edge; made when missing, as Chromium would), each Firefox profile holding a
  ``cert9.db`` (``~/.mozilla/firefox/*``, Debian's firefox-esr included) and the snap variants.
  Done with NSS's ``certutil`` (Debian ``libnss3-tools``), trust ``C,,`` (a CA for TLS servers).
- Linux, system-wide (root): ``/usr/local/share/ca-certificates/eid-agent-local-ca.crt`` and
  ``update-ca-certificates`` (WebKitGTK, curl, Python … read the system bundle).
- macOS: ``security add-trusted-cert -r trustRoot`` into the user's login keychain (asks for
  the user's password); Windows: ``certutil -user -addstore Root`` (Windows shows its own
  confirmation once). Neither runs in this repository's CI; see docs/deploy.md.

Every CA this agent made has a nickname starting ``eid-agent local CA``; installing a new one
removes the older ones, so a renewal swaps them. What was done is recorded in
``<config dir>/tls/trust.json`` for ``eid-agent diag`` and for removal.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.x509.oid import NameOID

from agent.tls.localca import CA_NAME, LocalTls, TlsFiles

__all__ = [
    "SYSTEM_ANCHOR",
    "TrustRecord",
    "install_for_user",
    "install_system",
    "nss_databases",
    "nss_has",
    "nss_install",
    "nss_remove_others",
    "read_record",
    "uninstall",
]

logger = logging.getLogger(__name__)

SYSTEM_ANCHOR = Path("/usr/local/share/ca-certificates/eid-agent-local-ca.crt")
TRUST_FILE = "trust.json"
NSS_TRUST = "C,,"


@dataclass
class TrustRecord:
    """Where the current CA was put: NSS databases (paths), the system bundle, OS stores."""

    fingerprint: str = ""
    name: str = ""
    nss: list[str] = field(default_factory=list)
    system: bool = False
    os_store: str = ""


def nickname(tls: LocalTls) -> str:
    names = tls.ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else CA_NAME


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def nss_databases(home: Path | None = None, *, create_chromium: bool = True) -> list[Path]:
    """The user's NSS databases (``sql:`` folders) that browsers read."""
    home = home or _home()
    found: list[Path] = []
    chromium = home / ".pki" / "nssdb"
    snap_chromium = home / "snap" / "chromium" / "current" / ".pki" / "nssdb"
    for db in (chromium, snap_chromium):
        if (db / "cert9.db").exists():
            found.append(db)
    if create_chromium and chromium not in found and shutil.which("certutil"):
        chromium.mkdir(parents=True, exist_ok=True)
        os.chmod(chromium, 0o700)
        _certutil("-N", "--empty-password", "-d", f"sql:{chromium}")
        found.append(chromium)
    for root in (
        home / ".mozilla" / "firefox",
        home / "snap" / "firefox" / "common" / ".mozilla" / "firefox",
    ):
        if root.is_dir():
            found.extend(sorted(p.parent for p in root.glob("*/cert9.db")))
    return found


def _certutil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed tool, our own arguments
        ["certutil", *args], capture_output=True, text=True, check=True, timeout=30
    )


def _nss_nicknames(db: Path) -> list[str]:
    out = _certutil("-L", "-d", f"sql:{db}").stdout
    names = []
    for line in out.splitlines():
        if line.startswith(CA_NAME):
            # "<nickname padded to 60>  <trust flags>": flags hold no blanks
            names.append(line.rstrip().rsplit(None, 1)[0].rstrip())
    return names


def nss_install(db: Path, tls: LocalTls) -> None:
    _certutil("-A", "-d", f"sql:{db}", "-n", nickname(tls), "-t", NSS_TRUST, "-i", str(tls.files.ca))


def nss_remove_others(db: Path, keep: str | None) -> list[str]:
    """Delete every eid-agent CA but ``keep`` from ``db``; the removed nicknames."""
    removed = []
    for name in _nss_nicknames(db):
        if name != keep:
            _certutil("-D", "-d", f"sql:{db}", "-n", name)
            removed.append(name)
    return removed


def nss_has(db: Path, name: str) -> bool:
    try:
        return name in _nss_nicknames(db)
    except (OSError, subprocess.SubprocessError):
        return False


def _record_path(files: TlsFiles) -> Path:
    return files.folder / TRUST_FILE


def read_record(files: TlsFiles) -> TrustRecord:
    try:
        data = json.loads(_record_path(files).read_text(encoding="utf-8"))
        return TrustRecord(
            fingerprint=str(data.get("fingerprint", "")),
            name=str(data.get("name", "")),
            nss=[str(p) for p in data.get("nss", [])],
            system=bool(data.get("system", False)),
            os_store=str(data.get("os_store", "")),
        )
    except (OSError, ValueError, AttributeError):
        return TrustRecord()


def _write_record(files: TlsFiles, record: TrustRecord) -> None:
    files.folder.mkdir(parents=True, exist_ok=True)
    _record_path(files).write_text(
        json.dumps(record.__dict__, indent=2) + "\n", encoding="utf-8"
    )


def install_for_user(tls: LocalTls, *, home: Path | None = None) -> TrustRecord:
    """Trust ``tls.ca`` in this user's browser stores, removing any older eid-agent CA.

    Failures are logged, never raised: the agent still serves ``ws://``, and ``diag`` tells.
    """
    record = read_record(tls.files)
    record.fingerprint = tls.ca_fingerprint
    name = nickname(tls)
    old_name = record.name
    record.name = name
    if sys.platform.startswith("linux") or sys.platform.startswith("freebsd"):
        if not shutil.which("certutil"):
            logger.warning("certutil (libnss3-tools) is missing: the local CA is not trusted by browsers")
        else:
            record.nss = []
            for db in nss_databases(home):
                try:
                    nss_remove_others(db, keep=None)
                    nss_install(db, tls)
                    record.nss.append(str(db))
                except (OSError, subprocess.SubprocessError) as exc:
                    logger.warning("cannot add the local CA to %s: %s", db, exc)
    elif sys.platform == "darwin":
        if old_name:
            subprocess.run(["security", "delete-certificate", "-c", old_name], check=False)  # noqa: S607
        record.os_store = _run_os_store([
            "security", "add-trusted-cert", "-r", "trustRoot", "-p", "ssl",
            "-k", str(_home() / "Library" / "Keychains" / "login.keychain-db"), str(tls.files.ca),
        ], "login keychain")
    elif sys.platform == "win32":
        if old_name:
            subprocess.run(["certutil", "-user", "-delstore", "Root", old_name], check=False)  # noqa: S607
        record.os_store = _run_os_store(
            ["certutil", "-user", "-addstore", "-f", "Root", str(tls.files.ca)], "CurrentUser Root"
        )
    if tls.replaced_ca is not None:
        logger.info("renewed the local CA; the old one was removed from the trust stores")
    _write_record(tls.files, record)
    logger.info("local CA %s trusted in: %s", name, ", ".join(record.nss) or record.os_store or "nothing")
    return record


def _run_os_store(command: list[str], label: str) -> str:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("cannot add the local CA to the %s: %s", label, exc)
        return ""
    return label


def install_system(tls: LocalTls, anchor: Path = SYSTEM_ANCHOR) -> None:
    """Put the CA into the system bundle (root; Debian's update-ca-certificates)."""
    anchor.parent.mkdir(parents=True, exist_ok=True)
    anchor.write_bytes(tls.files.ca.read_bytes())
    subprocess.run(["update-ca-certificates"], check=True, capture_output=True, timeout=120)  # noqa: S607
    record = read_record(tls.files)
    record.system = True
    _write_record(tls.files, record)


def uninstall(files: TlsFiles, *, home: Path | None = None, system: bool | None = None) -> list[str]:
    """Remove every eid-agent CA from the user's stores (and the system bundle when it was
    put there, or ``system=True``); delete the certificate files. What was removed."""
    done: list[str] = []
    record = read_record(files)
    if shutil.which("certutil") and not sys.platform == "win32":
        dbs: Iterable[Path] = {*map(Path, record.nss), *nss_databases(home, create_chromium=False)}
        for db in sorted(dbs):
            try:
                for name in nss_remove_others(db, keep=None):
                    done.append(f"{db}: {name}")
            except (OSError, subprocess.SubprocessError) as exc:
                logger.warning("cannot clean %s: %s", db, exc)
    if system if system is not None else record.system:
        if SYSTEM_ANCHOR.exists():
            SYSTEM_ANCHOR.unlink()
            subprocess.run(["update-ca-certificates", "--fresh"], check=False, capture_output=True)  # noqa: S607
            done.append(str(SYSTEM_ANCHOR))
    # The CA's common name is unique per install ("eid-agent local CA <random>").
    if record.os_store and record.name and sys.platform == "win32":
        subprocess.run(["certutil", "-user", "-delstore", "Root", record.name], check=False)  # noqa: S607
        done.append(f"{record.os_store}: {record.name}")
    if record.os_store and record.name and sys.platform == "darwin":
        subprocess.run(["security", "delete-certificate", "-c", record.name], check=False)  # noqa: S607
        done.append(f"{record.os_store}: {record.name}")
    _record_path(files).unlink(missing_ok=True)
    files.remove()
    return done
