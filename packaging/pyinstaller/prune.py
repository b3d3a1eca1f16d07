"""What the one-folder build leaves out: the rules of ``eid-agent.spec``, kept here as plain
functions so that ``tests/unit/test_prune.py`` can check them on every platform's layout.

PyInstaller's Qt hooks collect every plugin a Qt module *may* load, with the libraries those
plugins need. The dialogs are plain widgets painted by Qt's raster engine on the platform's
window system (xcb or Wayland on Linux, ``qwindows`` on Windows, ``cocoa`` on macOS) or
offscreen (tests): no images, SVG, OpenGL, network, touch or virtual-keyboard input. The
layouts differ: ``PySide6/Qt/lib`` and ``PySide6/Qt/plugins`` on Linux and macOS,
``PySide6/*.dll`` and ``PySide6/plugins`` on Windows; the rules match both.

Then :func:`reachable_only` keeps, of the shared libraries, only those that something loaded
by name reaches through its import table (ELF ``DT_NEEDED`` read with ``objdump``, PE import
tables read with ``pefile``, which PyInstaller itself uses on Windows).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

__all__ = [
    "LANGUAGES",
    "binary_wanted",
    "data_wanted",
    "needed_elf",
    "needed_pe",
    "qt_plugin",
    "reachable_only",
]

LANGUAGES = ("de", "en", "fr", "nl")
"""Translations are kept only for the languages the agent speaks (GTK's and Qt's are large)."""

# Qt plugin folders nothing loads: no EGL devices, touch or tablet input (generic), SVG icons
# or image formats.
QT_PLUGIN_TYPES_UNUSED = ("egldeviceintegrations", "generic", "iconengines", "imageformats")
# Platform plugins other than the window system's own and offscreen (tests and screenshots).
QT_PLATFORMS_UNUSED = ("qeglfs", "qlinuxfb", "qvnc", "qvkkhrdisplay", "qminimalegl", "qminimal",
                       "qdirect2d")
# Qt's own on-screen keyboard (a QML component): the system's touch keyboards work without it.
QT_INPUT_CONTEXTS_UNUSED = ("qtvirtualkeyboardplugin",)
# Qt libraries by module: EGL full-screen integrations, networking.
QT_MODULES_UNUSED = ("EglFSDeviceIntegration", "EglFsKmsSupport", "Network")
# Windows: the software OpenGL renderer and ANGLE, which Qt loads only for OpenGL drawing.
WINDOWS_GL = ("opengl32sw.dll", "d3dcompiler_", "libegl.dll", "libglesv2.dll")
PIL_LIBS_UNUSED = ("libavif", "libsharpyuv", "libwebp", "libharfbuzz", "libfreetype", "liblcms2",
                   "libbrotli", "libpng16")
# Linux system libraries: GTK's SVG pixbuf loader (librsvg with libxml2 and a second ICU) is
# there for SVG icon themes, which are not shipped; GIO's TLS and proxy modules (GnuTLS,
# libproxy, Kerberos): the tray makes no network connection through GIO.
SYSTEM_LIBS_UNUSED = ("librsvg-2", "libxml2", "libicudata.so.72", "libicuuc.so.72",
                      "libicui18n.so.72", "libpixbufloader-svg", "libgiognutls", "libgiolibproxy",
                      "libgiognomeproxy")


def _stem(name: str) -> str:
    """A library's name without ``lib`` and its suffixes: ``libqeglfs.so`` -> ``qeglfs``."""
    stem = name.split(".", 1)[0]
    return stem[3:] if stem.startswith("lib") else stem


def qt_plugin(dest: str) -> tuple[str, str] | None:
    """``(plugin type, file stem)`` for a Qt plugin in the bundle (any platform's layout)."""
    parts = PurePath(dest).parts
    if parts[:1] != ("PySide6",):
        return None
    if parts[1:3] == ("Qt", "plugins") and len(parts) > 4:
        return parts[3], _stem(parts[-1])
    if parts[1:2] == ("plugins",) and len(parts) > 3:
        return parts[2], _stem(parts[-1])
    return None


def _qt_module(name: str) -> str | None:
    """The Qt module a library file belongs to: ``libQt6Network.so.6`` and ``Qt6Network.dll``
    -> ``Network``; ``QtNetwork`` (a macOS framework binary) -> ``Network``."""
    stem = _stem(name)
    for prefix in ("Qt6", "Qt"):
        if stem.startswith(prefix) and len(stem) > len(prefix) and stem[len(prefix)].isupper():
            return stem[len(prefix):]
    return None


def binary_wanted(dest: str) -> bool:
    """False for a collected binary nothing in the agent loads."""
    parts = PurePath(dest).parts
    name = parts[-1]
    plugin = qt_plugin(dest)
    if plugin is not None:
        kind, stem = plugin
        if kind in QT_PLUGIN_TYPES_UNUSED:
            return False
        if kind == "platforms" and stem in QT_PLATFORMS_UNUSED:
            return False
        if kind == "platforminputcontexts" and stem in QT_INPUT_CONTEXTS_UNUSED:
            return False
        return True
    if parts[0] == "PySide6":
        if _qt_module(name) in QT_MODULES_UNUSED:
            return False
        if name.lower().startswith(WINDOWS_GL):
            return False
    if parts[0] == "pillow.libs" and name.startswith(PIL_LIBS_UNUSED):
        return False
    return not name.startswith(SYSTEM_LIBS_UNUSED)


def data_wanted(dest: str) -> bool:
    """False for translations in other languages, and for data files of unwanted binaries."""
    parts = PurePath(dest).parts
    if parts[:2] == ("share", "locale") and len(parts) > 2:
        return parts[2].split("_")[0] in LANGUAGES
    if "translations" in parts and dest.endswith(".qm"):
        return PurePath(dest).stem.rsplit("_", 1)[-1].split("_")[0] in LANGUAGES
    return binary_wanted(dest)


def needed_elf(path: str) -> list[str]:
    """The ``DT_NEEDED`` entries of an ELF file (``objdump -p``)."""
    out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True,
                         check=False).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def needed_pe(path: str) -> list[str]:
    """The DLLs a PE file imports, directly or delay-loaded (names as written)."""
    import pefile  # noqa: PLC0415 - PyInstaller's own dependency on Windows

    pe = pefile.PE(path, fast_load=True)
    try:
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"],
        ])
        return [entry.dll.decode("ascii", "replace")
                for attribute in ("DIRECTORY_ENTRY_IMPORT", "DIRECTORY_ENTRY_DELAY_IMPORT")
                for entry in getattr(pe, attribute, [])]
    finally:
        pe.close()


Entry = Any  # PyInstaller's (dest, source, kind) tuple


def reachable_only(
    binaries: Sequence[Entry],
    is_root: Callable[[str], bool],
    needed: Callable[[str], Iterable[str]],
    *,
    prunable: Callable[[str], bool] = lambda dest: True,
    case_insensitive: bool = False,
) -> list[Entry]:
    """Keep the binaries that a root (``is_root(dest)``: loaded by name at run time) reaches
    through import tables (``needed(source)``); unreached ones go when ``prunable(dest)``.
    Windows names compare without case (``case_insensitive``)."""
    def key(name: str) -> str:
        return name.lower() if case_insensitive else name

    by_name = {key(PurePath(dest).name): source for dest, source, _kind in binaries}
    keep = {key(PurePath(dest).name) for dest, _source, _kind in binaries if is_root(dest)}
    todo = list(keep)
    while todo:
        for name in needed(by_name[todo.pop()]):
            name = key(name)
            if name in by_name and name not in keep:
                keep.add(name)
                todo.append(name)
    return [entry for entry in binaries
            if key(PurePath(entry[0]).name) in keep or not prunable(entry[0])]
