"""``eid-agent install-autostart`` / ``uninstall-autostart``: start the agent at login.

Wired into :mod:`agent.app.cli` through ``add_parsers``. The work is in :mod:`agent.app.autostart`.
"""

from __future__ import annotations

import argparse
import logging

from agent.app import autostart

__all__ = ["add_parsers", "is_enabled"]

logger = logging.getLogger(__name__)


def is_enabled() -> bool:
    """True when the agent starts at login (the tray's "Start at login" check mark)."""
    return autostart.is_enabled()


def _report(result: autostart.AutostartResult) -> int:
    print(result.message)
    for path in result.paths:
        print(f"  {path}")
    return 0 if result.supported else 3


def _cmd_install(args: argparse.Namespace) -> int:
    return _report(autostart.install())


def _cmd_uninstall(args: argparse.Namespace) -> int:
    return _report(autostart.uninstall())


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the autostart subcommands to the ``eid-agent`` command line."""
    install = subparsers.add_parser(
        "install-autostart",
        help="start the agent at login (Linux: systemd user unit + XDG autostart entry)",
    )
    install.set_defaults(func=_cmd_install)
    uninstall = subparsers.add_parser(
        "uninstall-autostart", help="stop starting the agent at login (settings are kept)"
    )
    uninstall.set_defaults(func=_cmd_uninstall)
