"""Virtual cards for tests and demos (dev/test only, never shipped to users): the generic ISO 7816
card, the Belgian, IDEMIA and Thales cards, the vpcd bridge, test PKIs, the private pcscd, and the
``eid-emulator`` command (``virtual-card``, ``demo``)."""

__version__ = "0.1.0"
