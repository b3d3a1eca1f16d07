"""``eid-agent virtual-card``: serve a virtual Belgian eID card to pcscd through vpcd.

The card is inserted into the vpcd reader on ``--port`` and served until Ctrl-C or
SIGTERM (or ``--remove-after`` seconds). The test PKI and the card's keys live in
``--data-dir`` and are reused on the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from agent.emulator.base import VirtualCard
from agent.emulator.beid import PROFILES, BeidCard
from agent.emulator.pki import DEFAULT_OCSP_URL, Holder, TestPki, make_card_data
from agent.emulator.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdCard

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
    from agent.emulator import idemia, thales
    from agent.emulator.pki_other import load_or_make_pki

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eid-agent virtual-card", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
