"""The wss:// listener's certificates: a one-shot name-constrained local CA, putting it into
browser trust stores, and managed browser policies (Local Network Access)."""
