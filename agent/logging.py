"""Logging helpers: the TRAFFIC level for raw APDUs, below DEBUG.

Traffic logs are redacted (see :func:`agent.smartcard.apdu.redact_apdu`), yet they still show
everything else a card says; enabling them prints a warning.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

TRAFFIC_WARNING = (
    "APDU traffic logging is on. PIN blocks are redacted, but the log shows card data "
    "(certificates, identity). Turn it off when done."
)


def private_file_handler(path: str | Path) -> logging.FileHandler:
    """A FileHandler on a file only its owner can read (0600): TRAFFIC logs hold card data.

    The file is created 0600; an existing one is narrowed to 0600 before it is written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return logging.FileHandler(path, encoding="utf-8")


def setup(level: str | int = "INFO", file: str | None = None) -> None:
    """Configure root logging for the agent process."""
    if isinstance(level, str):
        level = TRAFFIC if level.upper() == "TRAFFIC" else logging.getLevelName(level.upper())
    handlers: list[logging.Handler] = []
    if sys.stderr is not None:  # a windowed Windows build (eid-agentw.exe) has no stderr
        handlers.append(logging.StreamHandler())
    if file:
        handlers.append(private_file_handler(file))
    if not handlers:
        handlers.append(logging.NullHandler())
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    if isinstance(level, int) and level <= TRAFFIC:
        logging.getLogger("agent").warning(TRAFFIC_WARNING)
