"""Reference portal: ID-card registration with eid-agent (see ``examples/portal/README.md``).

Python standard library plus ``eid_validator`` (which needs only ``cryptography``).
"""

from __future__ import annotations

from examples.portal.app import PortalApp, PortalError
from examples.portal.clock import AdjustableClock, Clock, system_clock
from examples.portal.codes import CodeBook, IssuedCode

__all__ = [
    "AdjustableClock",
    "Clock",
    "CodeBook",
    "IssuedCode",
    "PortalApp",
    "PortalError",
    "system_clock",
]
