"""The ``eid-agent`` command line.

Subcommands come from the modules that own them (``card_commands``, ``serve``, ``packaging``,
``tls_commands``, ``webeid_commands``); this file only wires them together and turns the agent's
typed errors into one line for the user. The card emulator's ``virtual-card`` and ``demo`` are
the ``eid-emulator`` command's.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys

from agent import __version__
from agent import logging as agent_logging
from agent.app import card_commands, packaging, serve, tls_commands, webeid_commands
from agent.errors import AgentError

logger = logging.getLogger(__name__)


def _cmd_readers(args: argparse.Namespace) -> int:
    from agent.pcsc import list_readers

    readers = list_readers()
    if not readers:
        print("No smart-card readers found.")
        return 1
    for reader in readers:
        if reader.card_present:
            atr = reader.atr.hex(" ").upper() if reader.atr else "?"
            print(f"{reader.name}: card present, ATR {atr}")
        else:
            print(f"{reader.name}: no card")
    return 0


def _cmd_diag(args: argparse.Namespace) -> int:
    print(f"eid-agent {__version__}")
    print(f"Python {platform.python_version()} ({sys.executable})")
    print(f"Platform {platform.platform()}")
    for line in tls_commands.diag_lines():
        print(line)
    try:
        from agent.pcsc import list_readers, pcsc_versions
    except ImportError as exc:
        print(f"pyscard: not available ({exc})")
        return 1
    for name, version in pcsc_versions().items():
        print(f"{name} {version}")
    try:
        readers = list_readers()
    except AgentError as exc:
        print(f"Readers: cannot list ({exc})")
        return 1
    print(f"Readers: {len(readers)}")
    for reader in readers:
        state = "card present" if reader.card_present else "no card"
        atr = f", ATR {reader.atr.hex(' ').upper()}" if reader.atr else ""
        pinpad = ", PIN pad" if reader.pinpad else ""
        print(f"  {reader.name}: {state}{atr}{pinpad}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="eid-agent", description="Local ID-card agent for web portals."
    )
    parser.add_argument("--version", action="version", version=f"eid-agent {__version__}")
    parser.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING or TRAFFIC (raw APDUs, redacted)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    readers = sub.add_parser("readers", help="list readers, card presence and ATR")
    readers.set_defaults(func=_cmd_readers)
    diag = sub.add_parser("diag", help="what a helpdesk needs: versions, readers, cards")
    diag.set_defaults(func=_cmd_diag)
    card_commands.add_parser(sub)
    serve.add_parser(sub)
    packaging.add_parsers(sub)
    tls_commands.add_parsers(sub)
    webeid_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    agent_logging.setup(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AgentError as exc:
        print(f"eid-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
