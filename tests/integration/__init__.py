"""Integration tests: the real pcscd with the vpcd driver and the virtual cards, OpenSC, the agent process."""
