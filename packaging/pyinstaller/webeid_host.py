"""Entry point of the frozen ``eid-agent-webeid-host`` (PyInstaller): the ``eu.webeid``
native messaging host, a console program (browsers talk to it over stdin/stdout)."""

from __future__ import annotations

import sys

from agent.webeid.host import main

if __name__ == "__main__":
    sys.exit(main())
