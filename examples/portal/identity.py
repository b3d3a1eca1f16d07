"""What the portal derives from a validated certificate (names; Belgian and Estonian birth dates)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from eid_validator import ValidatedIdentity

__all__ = ["baltic_birth_date", "belgian_birth_date", "user_view"]


def belgian_birth_date(national_number: str) -> dt.date | None:
    """The birth date encoded in a Belgian national number (YYMMDD + serial + check).

    The check digits are ``97 - (first nine digits mod 97)``; for people born from 2000 on
    a "2" is put in front of the nine digits. Returns None when the date part is not a real
    date (people whose birth date is unknown have month or day 00).
    """
    if len(national_number) != 11 or not national_number.isdigit():
        return None
    body, check = national_number[:9], int(national_number[9:])
    if 97 - int(body) % 97 == check:
        century = 1900
    elif 97 - int("2" + body) % 97 == check:
        century = 2000
    else:
        return None
    try:
        return dt.date(century + int(body[0:2]), int(body[2:4]), int(body[4:6]))
    except ValueError:
        return None


def baltic_birth_date(personal_code: str) -> dt.date | None:
    """The birth date in an Estonian personal code (GYYMMDDSSSC).

    G gives sex and century: 1/2 → 1800s, 3/4 → 1900s, 5/6 → 2000s, 7/8 → 2100s.
    (Latvian codes issued since 2017 carry no birth date; they start with 32.)
    """
    if len(personal_code) != 11 or not personal_code.isdigit() or personal_code[0] not in "12345678":
        return None
    century = 1800 + 100 * ((int(personal_code[0]) - 1) // 2)
    try:
        return dt.date(century + int(personal_code[1:3]), int(personal_code[3:5]), int(personal_code[5:7]))
    except ValueError:
        return None


def user_view(identity: ValidatedIdentity) -> dict[str, Any]:
    """The authenticated person as the page shows it (from the certificate only)."""
    name = " ".join(p for p in (identity.given_name, identity.surname) if p) or identity.common_name
    birth = None
    if identity.country == "BE" and identity.personal_code:
        date = belgian_birth_date(identity.personal_code)
        birth = date.isoformat() if date else None
    elif identity.country == "EE" and identity.personal_code:
        date = baltic_birth_date(identity.personal_code)
        birth = date.isoformat() if date else None
    return {
        "name": name or "",
        "givenName": identity.given_name,
        "surname": identity.surname,
        "commonName": identity.common_name,
        "personId": identity.serial_number,
        "country": identity.country,
        "birthDate": birth,
    }
