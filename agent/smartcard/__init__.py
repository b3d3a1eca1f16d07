"""The pure smart-card kit: the connection port and APDU mechanics, TLV, PC/SC part 10 PIN-pad
structures, the hash table, certificate info, and the reader-backend port. No I/O, no pyscard."""
