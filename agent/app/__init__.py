"""The composition root: CLI commands, the one interaction chooser, console and scripted
providers, autostart, idle memory. It imports everything; nothing in the agent imports it."""
