"""The house rules on who may import what, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def test_the_core_speaks_typed_values() -> None:
    """No base64 and no camelCase JSON keys in agent/core: agent/ws/messages.py makes the wire."""
    import re

    camel_key = re.compile(r"""["'][a-z]+[A-Z][A-Za-z]*["']\s*:""")
    for path in (ROOT / "agent" / "core").rglob("*.py"):
        assert not {"base64", "binascii"} & _imports(path), path
        # json only for the core's own files: stored approvals, the machine policy
        assert "json" not in _imports(path) or path.name in ("consent.py", "policy.py"), path
        assert not camel_key.search(path.read_text(encoding="utf-8")), path


def test_no_core_module_over_500_lines() -> None:
    for path in (ROOT / "agent" / "core").rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 500, (path, lines)


def _module_graph() -> dict[str, set[str]]:
    """agent.* module -> the agent.* modules it imports (anywhere in the file, lazy ones too)."""
    import ast

    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "agent").rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            targets |= {name for name in names if name in files and name != module}
        graph[module] = targets
    return graph


def test_no_import_circles() -> None:
    graph = _module_graph()
    # a package's __init__ re-exporting its own modules is not a circle
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_composition_root_is_imported_by_nobody() -> None:
    importers = sorted(m for m, ts in _module_graph().items()
                       if not m.startswith("agent.app") and m != "agent.__main__"
                       and any(t.startswith("agent.app") for t in ts))
    assert importers == []


def test_the_agent_root_holds_few_modules() -> None:
    modules = sorted(p.name for p in (ROOT / "agent").glob("*.py"))
    assert len(modules) <= 6, modules


def _agent_modules(path: Path) -> set[str]:
    """Dotted ``agent.*`` modules imported by ``path`` (at any depth in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "agent":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "agent")
    return found


def test_the_local_ca_is_pure() -> None:
    # Certificates from cryptography and the standard library only: no agent room, no program.
    imports = _imports(ROOT / "agent" / "tls" / "localca.py")
    assert imports <= {"__future__", "cryptography", "datetime", "ipaddress", "os", "ssl",
                       "dataclasses", "pathlib"}, imports


def test_the_tls_room_knows_no_sockets_cards_or_app() -> None:
    # agent/tls makes certificates, trust-store entries and policy files; the listener that
    # uses them is agent/ws, wired by agent/app.
    for path in (ROOT / "agent" / "tls").rglob("*.py"):
        assert not {"smartcard", "websockets", "socket"} & _imports(path), path
        others = {m for m in _agent_modules(path) if not m.startswith("agent.tls")}
        assert others <= {"agent", "agent.core.origin", "agent.errors"}, (path, others)


def test_the_peer_lookup_imports_no_agent_room() -> None:
    # agent/ws asks agent/peercred at accept time; peercred itself is standard library only.
    assert _agent_modules(ROOT / "agent" / "peercred.py") <= {"agent"}
