"""The wire form of a card's identity record (``readIdentity``, ``eid-agent card identity --json``).

The drivers return typed records (``agent.cards.beid_identity.BeidIdentity`` with its
``Identity`` and ``Address``); here they become camelCase JSON: bytes as upper-case hex
(file versions, hashes, chip number), dates in ISO form, enums by lower-case name, the
photo as base64, unknown TLV tags under ``extra`` (tag -> hex).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
from typing import Any

from agent.cards.beid_identity import Address, BeidIdentity, Identity
from agent.errors import NotSupportedError

__all__ = ["identity_json"]


def identity_json(record: object) -> dict[str, Any]:
    """The JSON object for a driver's identity record.

    Raises:
        NotSupportedError: a record type with no wire form (a card family that reads none).
    """
    if isinstance(record, BeidIdentity):
        return {
            "cardSerial": record.card_serial,
            "identity": _identity(record.identity),
            "address": _address(record.address),
            "photo": None if record.photo is None else base64.b64encode(record.photo).decode("ascii"),
        }
    raise NotSupportedError(f"no wire form for an identity record of type {type(record).__name__}")


def _identity(identity: Identity) -> dict[str, Any]:
    result = _fields(identity)
    result["documentTypeName"] = identity.document_type_name
    return result


def _address(address: Address) -> dict[str, Any]:
    return _fields(address)


def _fields(record: Identity | Address) -> dict[str, Any]:
    result = {_camel(f.name): _value(getattr(record, f.name)) for f in dataclasses.fields(record)}
    result["extra"] = {f"{tag:02X}": value.hex().upper() for tag, value in record.extra}
    return result


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, tuple):
        return [_value(item) for item in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
