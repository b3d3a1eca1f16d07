"""``python -m examples.portal``: run the reference portal."""

from __future__ import annotations

from examples.portal.server import main

raise SystemExit(main())
