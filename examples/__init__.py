"""Example applications built on eid-agent (not part of the installed agent)."""
