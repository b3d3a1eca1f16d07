"""The house rules on who may import what, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "build", "dist", "node_modules", ".git", "artifacts"}


def _python_files() -> list[Path]:
    return [
        p for p in ROOT.rglob("*.py") if not SKIP.intersection(p.relative_to(ROOT).parts)
    ]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _offenders(module: str, allowed: str) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for p in _python_files()
        if module in _imports(p) and not str(p.relative_to(ROOT)).startswith(allowed)
    )


def test_only_agent_pcsc_imports_pyscard() -> None:
    assert _offenders("smartcard", "agent/pcsc/") == []


def test_only_agent_ws_imports_websockets_in_the_product() -> None:
    # Tests and benchmarks may act as WebSocket clients; product code may not.
    offenders = [p for p in _offenders("websockets", "agent/ws/") if p.startswith(("agent/", "tray/"))]
    assert offenders == []


def test_the_tray_knows_no_cards() -> None:
    for path in (ROOT / "tray").rglob("*.py"):
        imports = _imports(path)
        text = path.read_text(encoding="utf-8")
        assert "smartcard" not in imports, path
        assert "agent.cards" not in text and "agent.pcsc" not in text, path


def test_the_core_knows_neither_sockets_nor_pyscard() -> None:
    rooms = [ROOT / "agent" / "core", ROOT / "agent" / "cards"]
    for path in [p for room in rooms for p in room.rglob("*.py")]:
        assert not {"smartcard", "websockets", "socket"} & _imports(path), path


def test_the_local_ca_is_pure() -> None:
    # Certificates from cryptography and the standard library only: no agent room, no program.
    imports = _imports(ROOT / "agent" / "localca.py")
    assert imports <= {"__future__", "cryptography", "datetime", "ipaddress", "os", "ssl",
                       "dataclasses", "pathlib"}, imports
