"""The dialog process: JSON lines in on stdin, JSON lines out on stdout, Qt in between.

A reader thread turns stdin lines into a Qt signal, so every widget is touched on the Qt
main thread. Replies go to a private duplicate of the original stdout; ``sys.stdout`` is
pointed at stderr so that no stray print can corrupt the protocol. Logs (stderr) name the
request id and type and the result, never a PIN.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import IO, Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication

from tray.dialogs.widgets import RequestError, TrustedDialog, create_dialog

logger = logging.getLogger(__name__)


class DialogServer(QObject):
    """Opens one dialog per request and writes its reply."""

    line_received = Signal(str)
    input_closed = Signal()

    def __init__(self, app: QApplication, out: IO[str]) -> None:
        super().__init__()
        self.app = app
        self.out = out
        self.open: dict[int, TrustedDialog] = {}
        self.line_received.connect(self.handle_line)
        self.input_closed.connect(self.shutdown)

    def write(self, reply: dict[str, Any]) -> None:
        self.out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        self.out.flush()

    @Slot(str)
    def handle_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("ignoring a line that is not JSON")
            return
        if not isinstance(request, dict) or not isinstance(request.get("id"), int):
            logger.warning("ignoring a request without an integer id")
            return
        self.handle(request)

    def handle(self, request: dict[str, Any]) -> None:
        request_id: int = request["id"]
        kind = request.get("type")
        if kind == "cancel":
            dialog = self.open.get(request_id)
            logger.info("request %d: cancel (%s)", request_id, "open" if dialog else "not open")
            if dialog is not None:
                dialog.close_silently()
            return
        if request_id in self.open:
            self.write({"id": request_id, "result": "error", "message": "duplicate id"})
            return
        try:
            dialog = create_dialog(request)
        except RequestError as exc:
            logger.warning("request %d (%s) rejected: %s", request_id, kind, exc)
            self.write({"id": request_id, "result": "error", "message": str(exc)})
            return
        logger.info("request %d: %s dialog opened", request_id, kind)
        self.open[request_id] = dialog
        dialog.replied.connect(lambda reply, rid=request_id: self._reply(rid, reply))
        dialog.present()

    def _reply(self, request_id: int, reply: dict[str, Any]) -> None:
        dialog = self.open.pop(request_id, None)
        logger.info("request %d: %s", request_id, reply.get("result"))
        self.write({"id": request_id, **reply})
        if dialog is not None:
            dialog.deleteLater()

    @Slot()
    def shutdown(self) -> None:
        logger.info("input closed; exiting")
        for dialog in list(self.open.values()):
            dialog.close_silently()
        self.app.quit()


def _read_stdin(stdin: IO[str], server: DialogServer) -> None:
    for line in stdin:
        server.line_received.emit(line)
    server.input_closed.emit()


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("EID_DIALOGS_LOG", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s dialogs %(levelname)s: %(message)s",
    )
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr
    stdin = sys.stdin
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    app.setApplicationName("eid-agent")
    app.setQuitOnLastWindowClosed(False)
    server = DialogServer(app, out)
    reader = threading.Thread(target=_read_stdin, args=(stdin, server), daemon=True)
    reader.start()
    logger.info("dialog process ready (platform %s)", app.platformName())
    code = app.exec()
    out.close()
    return code
