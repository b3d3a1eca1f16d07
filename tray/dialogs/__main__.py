"""Entry point of the dialog process: ``python -m tray.dialogs``."""

from __future__ import annotations

from tray.dialogs.server import main

if __name__ == "__main__":
    raise SystemExit(main())
