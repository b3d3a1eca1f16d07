"""Unit tests: no pcscd, no browser, no X server (Qt offscreen at most)."""
