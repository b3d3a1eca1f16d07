"""The portal's accounts in SQLite: one row per person (re-registering updates it)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Account", "AccountStore"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id TEXT NOT NULL UNIQUE,      -- the certificate's serialNumber (national number)
    country TEXT,
    certificate_name TEXT,               -- the certificate's commonName
    name TEXT NOT NULL,
    birth_date TEXT,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    summary TEXT NOT NULL,               -- canonical JSON that was signed
    hash_function TEXT NOT NULL,
    signature TEXT NOT NULL,             -- base64
    signing_certificate TEXT NOT NULL,   -- base64 DER
    created_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Account:
    """A registered account with its verified identity and the signed summary."""

    person_id: str
    country: str | None
    certificate_name: str | None
    name: str
    birth_date: str | None
    email: str
    phone: str
    summary: str
    hash_function: str
    signature: str
    signing_certificate: str
    created_at: str
    id: int | None = None


_COLUMNS = ("person_id", "country", "certificate_name", "name", "birth_date", "email", "phone",
            "summary", "hash_function", "signature", "signing_certificate", "created_at")


class AccountStore:
    """SQLite file (or ``":memory:"``-like temp path) holding :class:`Account` rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path)
            try:
                with db:
                    yield db
            finally:
                db.close()

    def save(self, account: Account) -> Account:
        """Insert, or update the person's existing account; return it with its id."""
        values = [getattr(account, c) for c in _COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "person_id")
        with self._connect() as db:
            db.execute(
                f"INSERT INTO accounts ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed names
                f"VALUES ({', '.join('?' for _ in _COLUMNS)}) "
                f"ON CONFLICT(person_id) DO UPDATE SET {updates}",
                values,
            )
        saved = self.get(account.person_id)
        assert saved is not None
        logger.info("account %d saved", saved.id)
        return saved

    def get(self, person_id: str) -> Account | None:
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)}, id FROM accounts WHERE person_id = ?",  # noqa: S608
                (person_id,),
            ).fetchone()
        return None if row is None else Account(*row)

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0])
