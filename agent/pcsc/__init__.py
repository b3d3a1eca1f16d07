"""The PC/SC binding: the only package that imports pyscard.

* :class:`PcscConnection`: a :class:`~agent.smartcard.apdu.SmartCardConnection` on pyscard's
  low-level ``smartcard.scard`` API, with transactions and part-10 reader control.
* :class:`PcscBackend`: the :class:`~agent.smartcard.backend.ReaderBackend` the agent runs on: one
  worker thread owns the PC/SC context, blocks in ``SCardGetStatusChange`` while idle
  (no polling), and runs card jobs, woken by ``SCardCancel``.
* :func:`list_readers`, :func:`connect`, :func:`wait_for_card`: one-shot helpers for the
  CLI and tests.
"""

from agent.pcsc.backend import PcscBackend
from agent.pcsc.connection import PcscConnection, PcscContext, connect, list_readers, wait_for_card

__all__ = [
    "PcscBackend",
    "PcscConnection",
    "PcscContext",
    "connect",
    "list_readers",
    "wait_for_card",
    "pcsc_versions",
]


def pcsc_versions() -> dict[str, str]:
    """Versions of pyscard and (where known) pcsc-lite, for diagnostics."""
    from agent.pcsc.connection import versions

    return versions()
