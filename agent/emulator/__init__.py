"""Virtual cards for tests and demos, served in-process or to pcscd through vpcd."""
