"""``eid-agent install-webeid-host`` / ``uninstall-webeid-host``: the browsers' manifests
(:mod:`agent.webeid.registration`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.webeid import registration

__all__ = ["add_parsers"]


def _browsers(args: argparse.Namespace) -> list[str]:
    return list(args.browser or ["all"])


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        ids = [registration.check_extension_id(i) for i in args.extension_id or ()]
    except ValueError as exc:
        print(f"eid-agent: {exc}", file=sys.stderr)
        return 2
    outcome = registration.install(
        system=args.system, browsers=_browsers(args), extension_ids=ids,
        replace=args.replace, host_path=args.host_path,
    )
    for line in outcome.lines:
        print(line)
    return 0 if outcome.ok else 1


def _cmd_uninstall(args: argparse.Namespace) -> int:
    outcome = registration.uninstall(system=args.system, browsers=_browsers(args))
    for line in outcome.lines or ["nothing to remove"]:
        print(line)
    return 0


def _level(parser: argparse.ArgumentParser) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--user", dest="system", action="store_false", default=False,
                       help="for this user (default)")
    level.add_argument("--system", dest="system", action="store_true", help="for every user (root)")
    parser.add_argument("--browser", action="append", choices=(*registration.BROWSERS, "all"),
                        help="chrome, chromium, edge, firefox or all (default; repeatable)")


def add_parsers(subparsers: Any) -> None:
    install = subparsers.add_parser(
        "install-webeid-host", help="register as the browsers' eu.webeid host (Web eID extension)"
    )
    _level(install)
    install.add_argument("--extension-id", action="append", metavar="ID",
                         help="also allow this extension (besides the Web eID store IDs; repeatable)")
    install.add_argument("--replace", action="store_true",
                         help="replace another eu.webeid host found there (kept; uninstall restores it)")
    install.add_argument("--host-path", help="the host executable to register (default: found)")
    install.set_defaults(func=_cmd_install)
    uninstall = subparsers.add_parser(
        "uninstall-webeid-host", help="remove the eu.webeid registration (restoring a replaced one)"
    )
    _level(uninstall)
    uninstall.set_defaults(func=_cmd_uninstall)
