"""Card drivers. Each speaks APDUs through a SmartCardConnection and does no I/O of its own."""
