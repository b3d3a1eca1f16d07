"""A fake AgentControl and autostart switch for the tray tests, and a tray runner.

Run as ``python -m tests.tray_fakes <lang>``: shows the real tray for a virtual card; a
line "remove" on stdin removes the card (state change through subscribe), closing stdin quits.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import replace

from agent.core.control import AgentState, CardSummary, Notice, ReaderSummary, Snapshot

VIRTUAL_READER = "Virtual PCD 00 00"

READY = Snapshot(
    state=AgentState.READY,
    readers=(
        ReaderSummary(
            VIRTUAL_READER,
            CardSummary(VIRTUAL_READER, "Belgian eID", "Alice", "Alice Specimen", "590000000001"),
        ),
        ReaderSummary("Virtual PCD 00 01", None, pinpad=True),
    ),
    connected_origins=("https://portal.example.be",),
    allowed_origins=("https://portal.example.be", "https://tax.example.be"),
    policy_origins=("https://intranet.example.org",),
    version="0.1.0",
    port=24847,
)


class FakeControl:
    """Records what the tray asks; pushes snapshots and notices like the core does."""

    def __init__(self, snapshot: Snapshot = READY) -> None:
        self.current = snapshot
        self.revoked: list[str] = []
        self.shutdowns = 0
        self.listeners: list[tuple[Callable[[Snapshot], None], Callable[[Notice, str], None]]] = []
        self.folder = "/tmp"

    def snapshot(self) -> Snapshot:
        return self.current

    def subscribe(
        self, on_change: Callable[[Snapshot], None], on_notice: Callable[[Notice, str], None]
    ) -> Callable[[], None]:
        pair = (on_change, on_notice)
        self.listeners.append(pair)
        return lambda: self.listeners.remove(pair)

    def push(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        for on_change, _ in list(self.listeners):
            on_change(snapshot)

    def notice(self, notice: Notice, detail: str) -> None:
        for _, on_notice in list(self.listeners):
            on_notice(notice, detail)

    def revoke_origin(self, origin: str) -> None:
        self.revoked.append(origin)

    def log_folder(self) -> str:
        return self.folder

    def shutdown(self) -> None:
        self.shutdowns += 1


class FakeAutostart:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def is_enabled(self) -> bool:
        return self.enabled

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled


def main() -> int:
    from tray.icon import TrayApp

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    control = FakeControl()
    app = TrayApp(control, FakeAutostart(True), lang=sys.argv[1] if len(sys.argv) > 1 else None)

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "remove":
                removed = (replace(READY.readers[0], card=None), READY.readers[1])
                control.push(replace(READY, state=AgentState.NO_CARD, readers=removed))
                control.notice(Notice.CARD_REMOVED, VIRTUAL_READER)
                print("removed", flush=True)
        app.stop()

    threading.Thread(target=commands, daemon=True).start()
    print("running", flush=True)
    app.run()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
