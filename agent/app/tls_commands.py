"""``eid-agent install-certificate`` / ``uninstall-certificate`` / ``write-browser-policy``,
and the TLS lines of ``eid-agent diag``.

The work is in :mod:`agent.tls.localca` (the CA and leaf), :mod:`agent.tls.truststore` (trust stores)
and :mod:`agent.tls.browser_policy` (managed browser policies).
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
from pathlib import Path

__all__ = ["PREPARED", "add_parsers", "diag_lines"]

PREPARED = "prepared"
"""What ``eid-agent prepare-certificate`` prints once the set is on disk (``serve`` waits for it)."""


def _config_dir(args: argparse.Namespace) -> Path:
    from agent.core.config import default_config_dir

    return Path(args.config_dir) if getattr(args, "config_dir", None) else default_config_dir()


def _cmd_install(args: argparse.Namespace) -> int:
    from agent.tls import localca, truststore

    tls = localca.ensure(_config_dir(args))
    record = truststore.install_for_user(tls)
    if args.system:
        truststore.install_system(tls)
        print(f"system bundle: {truststore.SYSTEM_ANCHOR}")
    print(f"local CA SHA-256 {tls.ca_fingerprint} ({'new' if tls.created else 'kept'};"
          f" certificate expires {tls.expires:%Y-%m-%d})")
    for db in record.nss:
        print(f"  trusted in NSS {db}")
    if record.os_store:
        print(f"  trusted in {record.os_store}")
    return 0 if (record.nss or record.os_store or args.system) else 3


def _cmd_prepare(args: argparse.Namespace) -> int:
    """What ``serve`` runs when its certificate set is missing, broken or due: make a set
    (a new one with ``--renew``), say so on stdout, then trust a new CA in this user's stores
    when ``--trust auto``. The serving process itself never loads ``cryptography``."""
    from agent.tls import localca

    renew_before = dt.timedelta.max if args.renew else localca.RENEW_BEFORE
    tls = localca.ensure(_config_dir(args), renew_before=renew_before)
    print(PREPARED, flush=True)
    if tls.created and args.trust == "auto":
        from agent.tls import truststore

        truststore.install_for_user(tls)
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from agent.tls import localca, truststore

    files = localca.TlsFiles.in_config_dir(_config_dir(args))
    removed = truststore.uninstall(files, system=True if args.system else None)
    print("removed the local CA and the agent's certificate"
          + ("" if removed else " (it was in no trust store)"))
    for where in removed:
        print(f"  {where}")
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    from agent.tls import browser_policy

    if args.windows_registry:
        keys = (browser_policy.remove_windows() if args.remove
                else browser_policy.write_windows(browser_policy.split_origins(args.origins or "")))
        for key in keys:
            print(f"HKLM\\{key}")
        return 0
    root = Path(args.root)
    if args.origins:
        args.origin = list(args.origin) + browser_policy.split_origins(args.origins)
    if not args.remove and not args.origin:
        print("eid-agent: give at least one --origin https://PORTAL", file=sys.stderr)
        return 2
    try:
        paths = (browser_policy.remove(args.origin or None, root) if args.remove
                 else browser_policy.write(args.origin, root))
    except ValueError as exc:
        print(f"eid-agent: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(("removed/updated " if args.remove else "wrote ") + str(path))
    if not args.remove:
        print("restart the browsers to apply (chrome://policy, about:policies)")
    return 0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _own_slot_port() -> int | None:
    """The ws port of the slot where this user's agent answers, if it runs."""
    from agent.ws.ports import SLOT_COUNT, own_agent_answers, slot_ports

    for slot in range(SLOT_COUNT):
        ws_port, _ = slot_ports(slot)
        if _listening(ws_port) and own_agent_answers(ws_port):
            return ws_port
    return None


def diag_lines(config_dir: Path | None = None, port: int | None = None) -> list[str]:
    """Both URLs, the CA's fingerprint and expiry, and where it is trusted (checked live).

    Without a machine-policy port the agent takes a slot (agent.ws.ports): the one where this
    user's agent answers is shown, else the first slot's ports."""
    from agent.core.config import AgentConfig
    from agent.tls import localca, truststore

    config = AgentConfig.load()
    config_dir = config_dir or config.config_dir
    ws_port = port or config.policy.port or _own_slot_port() or config.port
    lines = []
    for scheme, number in (("ws", ws_port), ("wss", ws_port + 1)):
        state = "listening" if _listening(number) else "not listening"
        lines.append(f"{scheme}://127.0.0.1:{number} ({state})")
    tls = localca.load(localca.TlsFiles.in_config_dir(config_dir))
    if tls is None:
        lines.append("Local CA: none yet (made at the agent's first start, or install-certificate)")
        return lines
    lines.append(f"Local CA: SHA-256 {tls.ca_fingerprint}")
    lines.append(f"  certificate expires {tls.expires:%Y-%m-%d %H:%M} UTC "
                 f"(renewed when fewer than {localca.RENEW_BEFORE.days} days are left)")
    lines.append(f"  files: {tls.files.folder}")
    record = truststore.read_record(tls.files)
    name = truststore.nickname(tls)
    trusted = [db for db in record.nss if truststore.nss_has(Path(db), name)]
    for db in trusted:
        lines.append(f"  trusted in NSS {db}")
    for db in sorted(set(record.nss) - set(trusted)):
        lines.append(f"  NOT trusted in NSS {db} (removed? run eid-agent install-certificate)")
    if truststore.SYSTEM_ANCHOR.exists() and \
            truststore.SYSTEM_ANCHOR.read_bytes() == tls.files.ca.read_bytes():
        lines.append(f"  trusted in the system bundle ({truststore.SYSTEM_ANCHOR})")
    if record.os_store:
        lines.append(f"  trusted in {record.os_store}")
    if not trusted and not record.os_store and not truststore.SYSTEM_ANCHOR.exists():
        lines.append("  trusted nowhere: browsers will refuse wss:// (eid-agent install-certificate)")
    return lines


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the certificate and browser-policy subcommands to the ``eid-agent`` command line."""
    install = subparsers.add_parser(
        "install-certificate",
        help="make the local CA for wss:// (if needed) and trust it in this user's browsers",
    )
    install.add_argument("--config-dir", help="the user's settings folder (default: per platform)")
    install.add_argument("--system", action="store_true",
                         help="also the system bundle (root; update-ca-certificates)")
    install.set_defaults(func=_cmd_install)
    prepare = subparsers.add_parser(
        "prepare-certificate",
        help="make the wss:// certificate set when it is missing or due (serve runs this)",
    )
    prepare.add_argument("--config-dir", help="the user's settings folder (default: per platform)")
    prepare.add_argument("--trust", choices=("auto", "none"), default="auto",
                         help="auto: trust a new CA in this user's browser stores")
    prepare.add_argument("--renew", action="store_true", help="make a new set even when not due")
    prepare.set_defaults(func=_cmd_prepare)
    uninstall = subparsers.add_parser(
        "uninstall-certificate",
        help="remove the local CA from the trust stores and delete the agent's certificate",
    )
    uninstall.add_argument("--config-dir", help="the user's settings folder (default: per platform)")
    uninstall.add_argument("--system", action="store_true", help="also the system bundle (root)")
    uninstall.set_defaults(func=_cmd_uninstall)
    policy = subparsers.add_parser(
        "write-browser-policy",
        help="let portals reach the agent without the Local Network Access prompt (root)",
    )
    policy.add_argument("--origin", action="append", default=[], metavar="https://PORTAL",
                        help="a portal's origin (repeatable)")
    policy.add_argument("--remove", action="store_true",
                        help="remove our policy (only these origins from Firefox's list, if given)")
    policy.add_argument("--origins", metavar="LIST",
                        help="origins separated by spaces, semicolons or commas (the MSI's form)")
    policy.add_argument("--windows-registry", action="store_true",
                        help="Windows: write Chrome's and Edge's HKLM policies (the MSI runs this)")
    policy.add_argument("--root", default="/", help=argparse.SUPPRESS)
    policy.set_defaults(func=_cmd_policy)
