"""The ``eid-emulator`` command.

``eid-emulator virtual-card``: serve a virtual card to pcscd through vpcd. The card is
inserted into the vpcd reader on ``--port`` and served until Ctrl-C or SIGTERM (or
``--remove-after`` seconds). The test PKI and the card's keys live in ``--data-dir`` and are
reused on the next run.

``eid-emulator demo``: a virtual Belgian eID in the vpcd reader, the agent (``eid-agent serve``
in this process) and the reference portal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from eid_emulator.base import VirtualCard
from eid_emulator.beid import PROFILES, BeidCard
from eid_emulator.pki import DEFAULT_OCSP_URL, Holder, TestPki, make_card_data
from eid_emulator.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdCard

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--card", choices=OTHER_CARDS, default=None,
                        help="serve another country's card instead of BELPIC: "
                             "EE/EE-X (IDEMIA 2018), EE2025, LV-RSA/LV-EC, FI3, FI4 "
                             "(PINs 1234 / 12345 or 123456 / PUK 12345678)")
    parser.add_argument("--applet", choices=sorted(PROFILES), default="1.8",
                        help="BELPIC applet version (1.8: ECDSA P-384, 1.7: RSA-2048)")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="folder of the test PKI and card keys (created if missing)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="where vpcd listens")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="vpcd port (35963 is reader 'Virtual PCD 00 00')")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds of delay before each APDU answer")
    parser.add_argument("--holder-json", type=Path,
                        help="JSON object of Holder fields (dates as YYYY-MM-DD)")
    parser.add_argument("--pin", help="the card's PIN (default: the holder's, 1234)")
    parser.add_argument("--rrn", choices=("ec", "rsa"),
                        help="RRN key for the identity signatures (default per applet)")
    parser.add_argument("--ocsp-url", default=DEFAULT_OCSP_URL,
                        help="OCSP URL written into the card certificates")
    parser.add_argument("--remove-after", type=float,
                        help="remove the card after this many seconds and exit")


def load_holder(path: Path | None, pin: str | None = None) -> Holder:
    values = json.loads(path.read_text(encoding="utf-8")) if path else {}
    if not isinstance(values, dict):
        raise ValueError("the holder JSON must be an object")
    if pin is not None:
        values["pin"] = pin
    return Holder.from_json(values)


OTHER_CARDS = ("EE", "EE-X", "EE2025", "LV-RSA", "LV-EC", "FI3", "FI4")


def other_card(name: str, data_dir: Path, pin: str | None) -> VirtualCard:
    """A virtual Estonian, Latvian or Finnish card; its test CA is kept in
    ``<data-dir>/<PKI profile>/`` (``root.crt.pem`` is what a portal trusts)."""
    from eid_emulator import idemia, thales
    from eid_emulator.pki_other import load_or_make_pki

    pki_key = {"EE": "EE2018", "EE-X": "EE2018"}.get(name, name)
    pki = load_or_make_pki(pki_key, data_dir / pki_key)
    extra = {"pin1": pin} if pin else {}
    if name in ("EE2025", "FI3", "FI4"):
        return thales.make_card(pki, name, **extra)
    profile = {"LV-RSA": "LV", "LV-EC": "LV-X"}.get(name, name)
    return idemia.make_card(pki, profile, **extra)


def run(args: argparse.Namespace) -> int:
    holder = load_holder(args.holder_json, args.pin)
    card: VirtualCard
    if args.card:
        card = other_card(args.card, args.data_dir, args.pin)
        label = f"{args.card} card"
    else:
        pki = TestPki.load_or_create(args.data_dir, ocsp_url=args.ocsp_url)
        card = BeidCard(args.applet, make_card_data(pki, holder, args.applet, rrn=args.rrn))
        label = f"BELPIC {args.applet} card for {holder.given_names} {holder.surname}"
    served = VpcdCard(card, host=args.host, port=args.port, latency=args.latency)
    served.fault_hook = card.faults.vpcd_hook  # type: ignore[attr-defined]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        served.insert()
        print(f"virtual {label} inserted at {args.host}:{args.port}; Ctrl-C to remove",
              flush=True)
        stop.wait(args.remove_after)
    finally:
        served.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _demo_data_dir() -> Path:
    return Path(os.environ.get("EID_AGENT_DEMO_DIR", Path.cwd() / "var" / "demo"))


def run_demo(args: argparse.Namespace) -> int:
    """The virtual card in the vpcd reader, the agent, and the reference portal."""
    from agent.app import serve
    from agent.core.config import DEFAULT_PORT as AGENT_PORT

    data_dir = _demo_data_dir()
    pki = TestPki.load_or_create(data_dir / "pki")
    holder = Holder()
    card = BeidCard(args.applet, make_card_data(pki, holder, args.applet))
    served = VpcdCard(card, port=args.vpcd_port, latency=args.latency)
    served.insert()
    print(f"virtual Belgian eID (applet {args.applet}) inserted; PIN {holder.pin}", flush=True)
    portal_origin = f"http://localhost:{args.portal_port}"
    if args.port is None:  # the portal page must know the agent's port: no slot search
        args.port = AGENT_PORT
    args.allow_http_loopback = True  # the demo portal is served over http://localhost
    portal: subprocess.Popen[bytes] | None = None
    if not args.no_portal:
        cmd = [
            sys.executable, "-m", "examples.portal", "--port", str(args.portal_port),
            "--agent-url", f"ws://127.0.0.1:{args.port}", "--data-dir", str(data_dir / "portal"),
            "--pki-dir", str(data_dir / "pki"),
        ]
        portal = subprocess.Popen(cmd)  # noqa: S603 - our own module
        print(f"reference portal: {portal_origin}/", flush=True)
    args.allow_origin = list(args.allow_origin or []) + [
        portal_origin, f"http://127.0.0.1:{args.portal_port}"
    ]
    try:
        return serve.run(args)
    finally:
        if portal is not None:
            portal.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                portal.wait(5)
        served.remove()


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.app import serve

    serve.add_arguments(parser)
    parser.add_argument("--applet", choices=("1.7", "1.8"), default="1.8")
    parser.add_argument("--vpcd-port", type=int, default=DEFAULT_PORT, help="vpcd reader port")
    parser.add_argument("--latency", type=float, default=0.0, help="per-APDU card latency (s)")
    parser.add_argument("--portal-port", type=int, default=8080)
    parser.add_argument("--no-portal", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eid-emulator", description="Virtual ID cards for tests and demos.")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or TRAFFIC")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    card = sub.add_parser("virtual-card", help="serve a virtual card to pcscd (vpcd)")
    add_arguments(card)
    card.set_defaults(func=run)
    demo = sub.add_parser("demo", help="the agent with a virtual Belgian eID card and the reference portal")
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from agent import logging as agent_logging
    from agent.errors import AgentError

    args = build_parser().parse_args(argv)
    agent_logging.setup(args.log_level)
    try:
        return int(args.func(args) or 0)
    except AgentError as exc:
        print(f"eid-emulator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
