"""The hash functions the agent knows, by their web-eid.js names, in one table.

web-eid.js allows SHA-224/256/384/512 and SHA3-224/256/384/512 as ``hashFunction``
(``/work/shared/reference/web-eid.md`` section 1; the names come from
``eid_validator.contract``); the Belgian driver also signs SHA-1
(applet 1.7), which web-eid.js never sends. Each entry names its ``hashlib`` algorithm;
the digest length comes from there. The RFC 8017 DigestInfo prefix (what an RSA card
that pads by itself wants in front of the hash) is given where a driver needs it.

Standard library and the Web eID contract only, so any layer may use it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from eid_validator import contract

logger = logging.getLogger(__name__)

__all__ = ["HASHES", "WEB_EID_HASHES", "HashFunction", "lookup"]


@dataclass(frozen=True)
class HashFunction:
    """One hash function: its web-eid.js name, its ``hashlib`` name, its DigestInfo."""

    name: str  # web-eid.js spelling, e.g. "SHA-384", "SHA3-256"
    hashlib_name: str  # e.g. "sha384", "sha3_256"
    digest_info_prefix: bytes | None = None  # RFC 8017 9.2 note 1; None where no driver needs it
    web_eid: bool = True  # False: known to a driver, but not a web-eid.js hashFunction

    @property
    def length(self) -> int:
        """The digest length in bytes."""
        return hashlib.new(self.hashlib_name).digest_size

    def digest_info(self, digest: bytes) -> bytes:
        """The DER DigestInfo of ``digest`` (prefix || digest).

        Raises:
            ValueError: no DigestInfo prefix is known for this hash function.
        """
        if self.digest_info_prefix is None:
            raise ValueError(f"no DigestInfo prefix for {self.name}")
        return self.digest_info_prefix + digest



# RFC 8017 DigestInfo prefixes, for drivers whose card pads RSA by itself.
_DIGEST_INFO_PREFIXES: Final = {
    "SHA-224": bytes.fromhex("302D300D06096086480165030402040500041C"),
    "SHA-256": bytes.fromhex("3031300D060960864801650304020105000420"),
    "SHA-384": bytes.fromhex("3041300D060960864801650304020205000430"),
    "SHA-512": bytes.fromhex("3051300D060960864801650304020305000440"),
}

HASHES: Final[Mapping[str, HashFunction]] = {
    "SHA-1": HashFunction("SHA-1", "sha1", bytes.fromhex("3021300906052B0E03021A05000414"),
                          web_eid=False),
    **{
        name: HashFunction(name, hashlib_name, _DIGEST_INFO_PREFIXES.get(name))
        for name, hashlib_name in contract.HASH_FUNCTIONS.items()
    },
}
"""Every hash function a driver or the core knows, by web-eid.js name."""

WEB_EID_HASHES: Final[Mapping[str, HashFunction]] = {
    name: h for name, h in HASHES.items() if h.web_eid
}
"""The ``hashFunction`` values web-eid.js allows, by their exact names."""


def lookup(name: str, known: Mapping[str, HashFunction] = HASHES) -> HashFunction | None:
    """The entry of ``known`` for a loosely spelt name (``"sha256"``, ``"SHA_256"``,
    ``"SHA-256"``), or ``None``."""
    canonical = name.strip().upper().replace("_", "-")
    for entry in known.values():
        if canonical in (entry.name, entry.name.replace("-", "")):
            return entry
    return None
