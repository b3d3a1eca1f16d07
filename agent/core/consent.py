"""The user's approvals of sites, kept in ``<config_dir>/approved-origins.json``.

The file is rewritten atomically (a temporary file in the same folder, flushed, then
``os.replace``), so a crash never leaves half a file. An unreadable file is set aside as
``approved-origins.json.corrupt`` and treated as empty: the user is asked again, nothing is
allowed by accident. Thread-safe: the tray revokes from its own thread.

Format::

    {"version": 1, "origins": {"https://example.org": {"site": "2024-...", "identity": "..."}}}

where each key of an origin is a :class:`~agent.core.interaction.ConsentKind` value and the
value is when the user approved it (UTC, ISO 8601).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from agent.core.interaction import ConsentKind

__all__ = ["ApprovalStore"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1


class ApprovalStore:
    """Origins the user allowed "always", per kind of consent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = self._read()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.error("cannot read approvals from %s: %s", self.path, exc)
            return {}
        try:
            raw = json.loads(text)
            origins = raw["origins"]
            if not isinstance(origins, dict):
                raise ValueError("origins is not an object")
            return {
                str(origin): {str(k): str(v) for k, v in kinds.items()}
                for origin, kinds in origins.items()
                if isinstance(kinds, dict)
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.error("approvals file %s is damaged (%s); moved to %s", self.path, exc, aside)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": _FORMAT_VERSION, "origins": self._data}, indent=2, sort_keys=True
        )
        fd, tmp = tempfile.mkstemp(prefix=".approved-origins.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def is_approved(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> bool:
        with self._lock:
            return kind.value in self._data.get(origin, {})

    def approve(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> None:
        """Remember that the user allowed ``origin`` for ``kind`` "always"."""
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self._lock:
            self._data.setdefault(origin, {})[kind.value] = stamp
            self._write()
        logger.info("user approved %s for %s", origin, kind.value)

    def revoke(self, origin: str) -> bool:
        """Forget every approval of ``origin``; True when there was one."""
        with self._lock:
            if self._data.pop(origin, None) is None:
                return False
            self._write()
        logger.info("approval of %s revoked", origin)
        return True

    def origins(self, kind: ConsentKind = ConsentKind.SITE) -> tuple[str, ...]:
        """The origins approved for ``kind``, sorted."""
        with self._lock:
            return tuple(sorted(o for o, kinds in self._data.items() if kind.value in kinds))
