"""End-to-end tests: browsers (Debian Chromium), Xvfb (tray, dialogs), the frozen binary, the MSI."""
