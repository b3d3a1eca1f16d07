"""eid-agent: a local ID-card agent for web portals."""

__version__ = "0.1.0"
