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


# agent/ws and agent/webeid are the two wire edges: pages' JSON-RPC over the WebSocket, and the
# Web eID extension's frames through the eu.webeid host and its channel to the agent.
WIRE_EDGES = ("agent/ws/", "agent/webeid/host.py", "agent/webeid/channel.py")
# json for a room's own files, not for a wire: approvals, machine policy, browser manifests
JSON_FILES = ("agent/core/consent.py", "agent/core/policy.py", "agent/webeid/registration.py")
# the composition root prints JSON for the CLI (its PEM/hex output included)
BASE64_ELSEWHERE = ("agent/app/",)


def test_json_and_base64_are_made_at_the_two_wire_edges_only() -> None:
    product = [p for room in ("agent", "tray") for p in (ROOT / room).rglob("*.py")]
    for path in product:
        rel = str(path.relative_to(ROOT))
        imports = _imports(path)
        if {"base64", "binascii"} & imports:
            assert rel.startswith(WIRE_EDGES + BASE64_ELSEWHERE), rel
        if "json" in imports and rel.startswith(("agent/core/", "agent/cards/", "agent/smartcard/",
                                                  "agent/pcsc/", "agent/webeid/")):
            assert rel.startswith(WIRE_EDGES + JSON_FILES), rel


def test_the_webeid_host_imports_only_the_standard_library() -> None:
    # The browser starts the host for every action: its start-up time is the user's time.
    import sys

    allowed = set(sys.stdlib_module_names) | {"agent"}
    host_side = [ROOT / "agent" / "webeid" / n for n in ("host.py", "paths.py", "winpeer.py", "__init__.py")]
    for path in [*host_side, ROOT / "agent" / "folders.py"]:
        assert _imports(path) <= allowed, path
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith(("from agent", "import agent")):
                assert line.strip().startswith((
                    "from agent import __version__", "from agent.webeid.paths ", "from agent.folders ",
                    "from agent.webeid import winpeer")), line


def test_the_webeid_host_process_loads_no_qt_pyscard_or_websockets() -> None:
    """Run the host as a browser would (a version frame, end of input) and list what it loaded."""
    import os
    import subprocess
    import sys

    probe = (
        "import io, sys\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO()); sys.argv = ['host', 'chrome-extension://x/']\n"
        "import agent.webeid.host as host\n"
        "host.main()\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), EID_AGENT_CONFIG_DIR="/nonexistent/eid-agent-probe")
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, timeout=60)
    loaded = {m.split(".")[0] for m in done.stderr.decode().split()}
    assert "agent" in loaded and "json" in loaded, done.stderr.decode()[-2000:]  # the probe ran
    assert not {"PySide6", "shiboken6", "smartcard", "websockets", "tray", "pystray"} & loaded


def test_the_virtual_cards_are_siblings_on_the_iso_card() -> None:
    """The Belgian, IDEMIA and Thales virtual cards build on the generic ISO 7816 card
    (eid_emulator.iso_card, iso7816, signing), never on one another (issue 12)."""
    cards = {"eid_emulator.beid", "eid_emulator.idemia", "eid_emulator.thales"}
    shared = {"eid_emulator.iso_card", "eid_emulator.iso7816", "eid_emulator.signing"}
    graph: dict[str, set[str]] = {}
    for module in cards | shared:
        path = ROOT / "emulator" / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {n.module for n in ast.walk(tree)
                         if isinstance(n, ast.ImportFrom) and n.module is not None}
    for card in cards:
        assert not (graph[card] & (cards - {card})), (card, graph[card])
        assert "eid_emulator.iso_card" in graph[card], card
    for module in shared:
        assert not (graph[module] & cards), (module, graph[module])
    from eid_emulator.beid import BeidCard
    from eid_emulator.idemia import IdemiaCard
    from eid_emulator.iso_card import IsoCard
    from eid_emulator.thales import ThalesCard

    for card_class in (BeidCard, IdemiaCard, ThalesCard):
        assert issubclass(card_class, IsoCard)
    assert not issubclass(IdemiaCard, BeidCard) and not issubclass(ThalesCard, BeidCard)


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
    # Certificates from cryptography and the standard library only, and the file layout of
    # agent.tls.served: no other agent room, no program.
    imports = _imports(ROOT / "agent" / "tls" / "localca.py")
    assert imports <= {"__future__", "cryptography", "datetime", "ipaddress", "os", "ssl",
                       "dataclasses", "pathlib", "agent"}, imports
    assert _agent_modules(ROOT / "agent" / "tls" / "localca.py") <= {"agent.tls.served"}


def test_the_serving_side_of_tls_is_standard_library_only() -> None:
    # What the resident agent runs: no cryptography (it reads certificates with certinfo).
    imports = _imports(ROOT / "agent" / "tls" / "served.py")
    assert "cryptography" not in imports, imports
    assert _agent_modules(ROOT / "agent" / "tls" / "served.py") <= {"agent.smartcard.certinfo"}


def test_the_tls_room_knows_no_sockets_cards_or_app() -> None:
    # agent/tls makes certificates, trust-store entries and policy files; the listener that
    # uses them is agent/ws, wired by agent/app.
    for path in (ROOT / "agent" / "tls").rglob("*.py"):
        assert not {"smartcard", "websockets", "socket"} & _imports(path), path
        others = {m for m in _agent_modules(path) if not m.startswith("agent.tls")}
        assert others <= {"agent", "agent.core.origin", "agent.errors",
                          "agent.smartcard.certinfo"}, (path, others)


def test_the_peer_lookup_imports_no_agent_room() -> None:
    # agent/ws asks agent/peercred at accept time; peercred itself is standard library only.
    assert _agent_modules(ROOT / "agent" / "peercred.py") <= {"agent"}
