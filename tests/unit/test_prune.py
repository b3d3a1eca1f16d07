"""The one-folder build's pruning rules (packaging/pyinstaller/prune.py) on each platform's
layout, and the import-table readers they rely on, on real ELF and PE files.

The Linux build itself is checked by tests/e2e/test_pyinstaller.py; the Windows one by the
Windows workflow. Here: that the same rules mean the same on the Linux, Windows and macOS
layouts of PySide6, and that a DLL's imports are read as Windows reads them.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging" / "pyinstaller"))
import prune  # noqa: E402

KEPT = [
    # Linux
    "PySide6/Qt/lib/libQt6Core.so.6", "PySide6/Qt/lib/libQt6Gui.so.6",
    "PySide6/Qt/lib/libQt6Widgets.so.6", "PySide6/Qt/lib/libQt6XcbQpa.so.6",
    "PySide6/Qt/lib/libQt6WaylandClient.so.6", "PySide6/QtWidgets.abi3.so",
    "PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqwayland.so",
    "PySide6/Qt/plugins/platforms/libqoffscreen.so",
    "PySide6/Qt/plugins/platforminputcontexts/libibusplatforminputcontextplugin.so",
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so", "libgtk-3.so.0", "libpython3.11.so.1.0",
    # Windows
    "PySide6/Qt6Core.dll", "PySide6/Qt6Gui.dll", "PySide6/Qt6Widgets.dll", "PySide6/QtGui.pyd",
    "PySide6/pyside6.abi3.dll", "PySide6/msvcp140.dll", "PySide6/plugins/platforms/qwindows.dll",
    "PySide6/plugins/platforms/qoffscreen.dll", "PySide6/plugins/styles/qmodernwindowsstyle.dll",
    "python311.dll", "libcrypto-3.dll",
    # macOS
    "PySide6/Qt/lib/QtGui.framework/Versions/A/QtGui",
    "PySide6/Qt/plugins/platforms/libqcocoa.dylib",
    "PySide6/Qt/plugins/styles/libqmacstyle.dylib",
]
DROPPED = [
    # Linux
    "PySide6/Qt/lib/libQt6Network.so.6", "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.6",
    "PySide6/QtNetwork.abi3.so", "PySide6/Qt/plugins/imageformats/libqjpeg.so",
    "PySide6/Qt/plugins/iconengines/libqsvgicon.so", "PySide6/Qt/plugins/generic/libqtuiotouchplugin.so",
    "PySide6/Qt/plugins/platforms/libqeglfs.so", "PySide6/Qt/plugins/platforms/libqminimal.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so",
    "PySide6/Qt/plugins/egldeviceintegrations/libqeglfs-kms-integration.so",
    "pillow.libs/libwebp-1a2b3c4d.so.7.1.10", "librsvg-2.so.2", "libicudata.so.72",
    # Windows
    "PySide6/opengl32sw.dll", "PySide6/d3dcompiler_47.dll", "PySide6/Qt6Network.dll",
    "PySide6/plugins/platforms/qdirect2d.dll", "PySide6/plugins/platforms/qminimal.dll",
    "PySide6/plugins/imageformats/qjpeg.dll", "PySide6/plugins/iconengines/qsvgicon.dll",
    "PySide6/plugins/generic/qtuiotouchplugin.dll",
    "PySide6/plugins/platforminputcontexts/qtvirtualkeyboardplugin.dll",
    # macOS
    "PySide6/Qt/lib/QtNetwork.framework/Versions/A/QtNetwork",
    "PySide6/Qt/plugins/imageformats/libqjpeg.dylib",
]


@pytest.mark.parametrize("dest", KEPT)
def test_kept(dest: str) -> None:
    assert prune.binary_wanted(dest)


@pytest.mark.parametrize("dest", DROPPED)
def test_dropped(dest: str) -> None:
    assert not prune.binary_wanted(dest)


def test_plugins_are_found_in_every_layout() -> None:
    assert prune.qt_plugin("PySide6/Qt/plugins/platforms/libqxcb.so") == ("platforms", "qxcb")
    assert prune.qt_plugin("PySide6/plugins/platforms/qwindows.dll") == ("platforms", "qwindows")
    assert prune.qt_plugin("PySide6/Qt/plugins/styles/libqmacstyle.dylib") == ("styles", "qmacstyle")
    assert prune.qt_plugin("PySide6/Qt6Core.dll") is None
    assert prune.qt_plugin("PySide6/Qt/lib/libQt6Core.so.6") is None
    assert prune.qt_plugin("plugins/platforms/x.dll") is None


def test_translations_only_in_our_languages() -> None:
    for lang in prune.LANGUAGES:
        assert prune.data_wanted(f"PySide6/Qt/translations/qtbase_{lang}.qm")
        assert prune.data_wanted(f"PySide6/translations/qtbase_{lang}.qm")  # Windows layout
        assert prune.data_wanted(f"share/locale/{lang}/LC_MESSAGES/gtk30.mo")
    assert prune.data_wanted("share/locale/fr_BE/LC_MESSAGES/gtk30.mo")
    for other in ("ja", "zh_CN", "pt_BR"):
        assert not prune.data_wanted(f"PySide6/translations/qtbase_{other}.qm")
        assert not prune.data_wanted(f"share/locale/{other}/LC_MESSAGES/gtk30.mo")
    assert prune.data_wanted("tray/locale/nl/LC_MESSAGES/eid-agent.mo")


def test_reachability_drops_what_the_removed_plugins_left_orphaned() -> None:
    """Windows layout: the SVG icon plugin goes by rule, Qt's SVG library with it (nothing
    else imports it); Qt's network library was never reached; a DLL outside PySide6 stays."""
    graph = {
        "PySide6/QtWidgets.pyd": ["Qt6Widgets.dll", "PYSIDE6.ABI3.DLL"],
        "PySide6/Qt6Widgets.dll": ["Qt6Gui.dll", "KERNEL32.dll"],
        "PySide6/Qt6Gui.dll": ["Qt6Core.dll"],
        "PySide6/Qt6Core.dll": ["MSVCP140.dll"],
        "PySide6/pyside6.abi3.dll": [],
        "PySide6/msvcp140.dll": [],
        "PySide6/plugins/platforms/qwindows.dll": ["Qt6Gui.dll"],
        "PySide6/plugins/iconengines/qsvgicon.dll": ["Qt6Svg.dll"],
        "PySide6/Qt6Svg.dll": ["Qt6Gui.dll"],
        "PySide6/Qt6OpenGL.dll": ["Qt6Gui.dll"],
        "helper.dll": [],
    }
    binaries = [(dest, dest, "BINARY") for dest in graph if prune.binary_wanted(dest)]
    assert "PySide6/plugins/iconengines/qsvgicon.dll" not in [d for d, _s, _k in binaries]
    kept = prune.reachable_only(
        binaries,
        lambda dest: dest.endswith(".pyd") or prune.qt_plugin(dest) is not None,
        graph.__getitem__,
        prunable=lambda dest: dest.startswith("PySide6/"),
        case_insensitive=True,
    )
    assert sorted(d for d, _s, _k in kept) == sorted([
        "PySide6/QtWidgets.pyd", "PySide6/Qt6Widgets.dll", "PySide6/Qt6Gui.dll",
        "PySide6/Qt6Core.dll", "PySide6/pyside6.abi3.dll", "PySide6/msvcp140.dll",
        "PySide6/plugins/platforms/qwindows.dll",
        "helper.dll",  # unreached, but outside what may be pruned
    ])


def test_elf_imports_are_read() -> None:
    if not shutil.which("objdump"):
        pytest.skip("no objdump")
    needed = prune.needed_elf(ssl._ssl.__file__)  # type: ignore[attr-defined]
    assert any(name.startswith("libssl.so") for name in needed), needed


def _mingw() -> str:
    gcc = shutil.which("x86_64-w64-mingw32-gcc")
    if gcc is None:
        if os.environ.get("CI"):
            pytest.fail("x86_64-w64-mingw32-gcc is missing (scripts/setup.sh installs it)")
        pytest.skip("no mingw-w64")
    return gcc


def test_pe_imports_are_read_from_real_dlls(tmp_path: Path) -> None:
    """Two DLLs built with mingw-w64, one importing the other, as Qt's DLLs do."""
    pytest.importorskip("pefile")
    gcc = _mingw()
    (tmp_path / "core.c").write_text("__declspec(dllexport) int core(void) { return 7; }\n")
    (tmp_path / "gui.c").write_text(
        "__declspec(dllimport) int core(void);\n"
        "__declspec(dllexport) int gui(void) { return core() + 1; }\n")
    subprocess.run([gcc, "-shared", "-o", "Qt6Core.dll", "core.c",
                    "-Wl,--out-implib,libQt6Core.a"], cwd=tmp_path, check=True)
    subprocess.run([gcc, "-shared", "-o", "Qt6Gui.dll", "gui.c", "-L.", "-lQt6Core"],
                   cwd=tmp_path, check=True)
    gui = prune.needed_pe(str(tmp_path / "Qt6Gui.dll"))
    assert "Qt6Core.dll" in gui, gui
    assert "Qt6Gui.dll" not in prune.needed_pe(str(tmp_path / "Qt6Core.dll"))
    binaries = [(f"PySide6/{n}", str(tmp_path / n), "BINARY") for n in ("Qt6Gui.dll", "Qt6Core.dll")]
    assert prune.reachable_only(binaries, lambda d: d.endswith("Gui.dll"), prune.needed_pe,
                                case_insensitive=True) == binaries
    assert prune.reachable_only(binaries, lambda d: d.endswith("Core.dll"), prune.needed_pe,
                                case_insensitive=True) == binaries[1:]
