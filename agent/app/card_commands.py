"""``eid-agent card``: what is on the Belgian eID card in each reader.

* ``eid-agent card`` (or ``card info``): card type, applet version, serial, PIN tries left
  (no try spent) and the certificate subjects, for every reader with a card.
* ``eid-agent card identity``: identity, address and photo, after verifying the RRN
  signatures (``--json`` for machine output, ``--photo FILE`` to save the JPEG).

Reads only; never asks for or sends a PIN.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from agent.cards.beid import PIN, BeidFile, BeidSession, open_session
from agent.cards.beid_identity import BeidIdentity
from agent.errors import AgentError, NoCardError, NoReaderError, UnsupportedCardError

logger = logging.getLogger(__name__)

__all__ = ["add_parser", "run"]

_CERTIFICATES = (
    ("Authentication", BeidFile.CERT_AUTHENTICATION),
    ("Signing", BeidFile.CERT_SIGNING),
    ("CA", BeidFile.CERT_CA),
    ("Root", BeidFile.CERT_ROOT),
    ("RRN", BeidFile.CERT_RRN),
)


def add_parser(subparsers: Any) -> None:
    """Add ``card`` to the ``eid-agent`` subcommands."""
    parser = subparsers.add_parser(
        "card",
        help="show the Belgian eID card(s): type, serial, PIN tries, certificates, identity",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("info", "identity"),
        default="info",
        help="info (default) or identity (verified identity and address)",
    )
    parser.add_argument("--reader", help="only readers whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--photo", type=Path, help="identity: save the photo (JPEG) here")
    parser.set_defaults(func=run)


def _subject(certificate: bytes | None) -> str:
    if certificate is None:
        return "(none)"
    from cryptography import x509  # noqa: PLC0415 - the resident agent never loads it for this

    try:
        names = {
            x509.NameOID.SERIAL_NUMBER: "serialNumber",
            x509.NameOID.GIVEN_NAME: "GN",
            x509.NameOID.SURNAME: "SN",
        }
        return x509.load_der_x509_certificate(certificate).subject.rfc4514_string(names)
    except ValueError:
        return "(unparsable)"


def _info(session: BeidSession) -> dict[str, Any]:
    status = session.pin_status(PIN)
    return {
        "cardType": session.info.card_type,
        "appletVersion": session.card_data.applet_label,
        "serial": session.info.serial,
        "holder": session.info.holder_name,
        "pinTriesLeft": status.tries_left,
        "pinBlocked": status.blocked,
        "certificates": {label: _subject(session.read_certificate(file)) for label, file in _CERTIFICATES},
    }


def _print_info(reader: str, info: dict[str, Any]) -> None:
    print(f"{reader}:")
    print(f"  Card type:      {info['cardType']}")
    print(f"  Applet version: {info['appletVersion']}")
    print(f"  Serial:         {info['serial']}")
    print(f"  Holder:         {info['holder'] or '(unknown)'}")
    tries = "blocked" if info["pinBlocked"] else info["pinTriesLeft"]
    print(f"  PIN tries left: {tries}")
    for label, subject in info["certificates"].items():
        print(f"  {label + ' certificate:':<28}{subject}")


def _print_identity(reader: str, data: BeidIdentity) -> None:
    ident, address = data.identity, data.address
    birth = ident.birth_date.isoformat() if ident.birth_date else ident.birth_date_raw
    rows = [
        ("Surname", ident.surname),
        ("Given names", f"{ident.given_names} {ident.third_given_name_initial}".strip()),
        ("National number", ident.formatted_national_number),
        ("Birth", f"{birth}, {ident.birth_location}"),
        ("Sex", ident.sex.name.lower() if ident.sex else ident.sex_raw),
        ("Nationality", ident.nationality),
        ("Noble condition", ident.noble_condition),
        ("Card number", ident.card_number),
        ("Document type", ident.document_type_name or ident.document_type_raw),
        ("Valid", f"{ident.validity_begin_raw} to {ident.validity_end_raw}"),
        ("Issued in", ident.card_delivery_municipality),
        ("Address", f"{address.street_and_number}, {address.zip_code} {address.municipality}"),
        ("Photo", f"{len(data.photo)} bytes JPEG" if data.photo else "(not read)"),
    ]
    print(f"{reader}: identity (signatures verified)")
    for label, value in rows:
        if value:
            print(f"  {label + ':':<17}{value}")


def _one_reader(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from agent.pcsc import connect

    with connect(name) as connection, connection.transaction():
        session = open_session(connection)
        if args.action == "identity":
            data = session.read_identity(photo=True)
            if args.photo and data.photo:
                args.photo.write_bytes(data.photo)
            if not args.json:
                _print_identity(name, data)
            from agent.ws.identity import identity_json  # the wire form, as readIdentity gives it

            return identity_json(data)
        info = _info(session)
        if not args.json:
            _print_info(name, info)
        return info


def run(args: argparse.Namespace) -> int:
    """Run ``eid-agent card``; 0 when at least one Belgian eID card was shown."""
    from agent.pcsc import list_readers

    readers = [r for r in list_readers() if not args.reader or args.reader in r.name]
    if not readers:
        raise NoReaderError("no smart-card reader found")
    with_card = [r for r in readers if r.card_present]
    if not with_card:
        raise NoCardError("no card in any reader")
    results: dict[str, Any] = {}
    shown = 0
    for reader in with_card:
        try:
            results[reader.name] = _one_reader(reader.name, args)
            shown += 1
        except UnsupportedCardError as exc:
            results[reader.name] = {"error": str(exc)}
            if not args.json:
                print(f"{reader.name}: {exc}")
        except AgentError as exc:
            logger.debug("card in %s failed", reader.name, exc_info=True)
            results[reader.name] = {"error": str(exc)}
            if not args.json:
                print(f"{reader.name}: error: {exc}")
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if shown else 1
