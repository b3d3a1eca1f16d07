"""The ``eid-agent`` command line.

Subcommands come from the modules that own them; this file only wires them together
and turns the agent's typed errors into one line for the user.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import platform
import sys
from collections.abc import Callable
from typing import Any

from agent import __version__
from agent import logging as agent_logging
from agent.errors import AgentError

logger = logging.getLogger(__name__)

# (module, function) pairs adding subcommands; a module that is missing is skipped, so a
# partial checkout still has a working CLI.
PLUGINS: tuple[tuple[str, str], ...] = (
    ("agent.cli_card", "add_parser"),
    ("agent.cli_serve", "add_parser"),
    ("agent.cli_packaging", "add_parsers"),
    ("agent.cli_tls", "add_parsers"),
)


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
    from agent.cli_tls import diag_lines

    for line in diag_lines():
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


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``argv``, subcommands it does not name may be left without
    their arguments (so their modules are not imported)."""
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
    if importlib.util.find_spec("agent.emulator") is not None:
        card = sub.add_parser("virtual-card", help="serve a virtual Belgian eID card to pcscd (vpcd)")
        if argv is None or "virtual-card" in argv:
            # The card emulator (and its test PKI) is loaded only for this command: the
            # resident agent would otherwise carry it in memory.
            from agent.emulator import cli as emulator_cli

            emulator_cli.add_arguments(card)
            card.set_defaults(func=emulator_cli.run)
    for module_name, function in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name != module_name:
                raise
            continue
        add: Callable[[Any], None] = getattr(module, function)
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
