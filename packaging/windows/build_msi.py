"""Build the eid-agent MSI on Linux with wixl: the stand-in for the Windows WiX build.

It proves that ``eid-agent.wxs`` compiles and lets tests read the tables with ``msiinfo``.
Steps: describe the payload (harvest.py), compile with wixl, then apply the two WiX features
wixl lacks (Component/Condition, Property/@Secure) with msibuild, reading them from the same
source. Needs Debian's ``wixl`` and ``msitools``.

Usage: ``python build_msi.py [--payload DIR] [--exe-name NAME] [--version X.Y.Z] -o OUT.msi``
Without ``--payload`` it builds around ``dist/eid-agent`` (the PyInstaller output) if present,
else around a small generated stand-in payload.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harvest import harvest  # noqa: E402

logger = logging.getLogger(__name__)

SOURCE = HERE / "eid-agent.wxs"
# The Windows build has both: eid-agent.exe (console, the CLI) and eid-agentw.exe (no console
# window), which the Run entry starts at logon.
CONSOLE_EXE = "eid-agent.exe"
WINDOWED_EXE = "eid-agentw.exe"
HOST_EXE = "eid-agent-webeid-host.exe"
REPO = HERE.parent.parent
WIX_NS = "{http://schemas.microsoft.com/wix/2006/wi}"
_COMPONENT_CONDITION = re.compile(r"\s*<Condition>[^<]*</Condition>")


def component_conditions(source: Path = SOURCE) -> dict[str, str]:
    """Component id -> condition text, as written in the WiX source."""
    root = ET.parse(source).getroot()  # noqa: S314 - our own file
    found: dict[str, str] = {}
    for comp in root.iter(f"{WIX_NS}Component"):
        cond = comp.find(f"{WIX_NS}Condition")
        if cond is not None and cond.text:
            found[comp.attrib["Id"]] = cond.text.strip()
    return found


def secure_properties(source: Path = SOURCE) -> list[str]:
    """Ids of the properties marked Secure="yes" in the WiX source."""
    root = ET.parse(source).getroot()  # noqa: S314 - our own file
    return [
        prop.attrib["Id"]
        for prop in root.iter(f"{WIX_NS}Property")
        if prop.attrib.get("Secure") == "yes"
    ]


# msidbCustomActionType: 34 = run an exe with a directory as working folder; flags.
_EXE_IN_DIRECTORY = 34
_RETURN_IGNORE = 64
_DEFERRED = 1024
_NO_IMPERSONATE = 2048


def exe_custom_actions(source: Path = SOURCE) -> dict[str, tuple[int, str, str]]:
    """Id -> (type, source directory, command line) of the Directory/ExeCommand custom
    actions in the WiX source (wixl drops these; build() writes them itself)."""
    root = ET.parse(source).getroot()  # noqa: S314 - our own file
    found: dict[str, tuple[int, str, str]] = {}
    for action in root.iter(f"{WIX_NS}CustomAction"):
        attrs = action.attrib
        if "ExeCommand" not in attrs or "Directory" not in attrs:
            continue
        kind = _EXE_IN_DIRECTORY
        if attrs.get("Return") == "ignore":
            kind |= _RETURN_IGNORE
        if attrs.get("Execute") == "deferred":
            kind |= _DEFERRED
        if attrs.get("Impersonate") == "no":
            kind |= _NO_IMPERSONATE
        found[attrs["Id"]] = (kind, attrs["Directory"], attrs["ExeCommand"])
    return found


def make_standin_payload(folder: Path, exe_name: str) -> Path:
    """A small payload shaped like the PyInstaller one-folder output."""
    internal = folder / "_internal"
    (internal / "agent" / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (internal / "agent" / "web").mkdir(parents=True)
    for name in {exe_name, CONSOLE_EXE, HOST_EXE}:
        (folder / name).write_text(f"stand-in for {name}\n")
    (internal / "base_library.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    (internal / "agent" / "locale" / "fr" / "LC_MESSAGES" / "eid-agent.mo").write_bytes(b"\0")
    (internal / "agent" / "web" / "eid-agent.js").write_text("// stand-in\n")
    return folder


def write_webeid_manifests(payload: Path) -> None:
    """The eu.webeid manifests next to the host; ``path`` is relative (Windows allows that,
    relative to the manifest's folder), so they hold wherever the MSI installs."""
    sys.path.insert(0, str(REPO))
    from agent.webeid.registration import manifest  # stdlib only

    for browser, name in (("chrome", "eu.webeid.json"), ("firefox", "eu.webeid.firefox.json")):
        text = json.dumps(manifest(browser, HOST_EXE), indent=2) + "\n"
        (payload / name).write_text(text, encoding="utf-8")


def _sql(table_updates: list[str]) -> list[str]:
    args: list[str] = []
    for query in table_updates:
        args += ["-q", query]
    return args


def _quote(text: str) -> str:
    return text.replace("'", "''")


def build(payload: Path, output: Path, *, version: str, exe_name: str) -> Path:
    """Compile the MSI; returns ``output``."""
    if not (payload / exe_name).is_file():
        raise FileNotFoundError(f"{exe_name} is not in the payload {payload}")
    if not (payload / HOST_EXE).is_file():
        logger.warning("%s is not in the payload: the Web eID registration would point nowhere", HOST_EXE)
    write_webeid_manifests(payload)
    with tempfile.TemporaryDirectory(prefix="eid-msi-") as tmp:
        work = Path(tmp)
        source = _COMPONENT_CONDITION.sub("", SOURCE.read_text(encoding="utf-8"))
        (work / "eid-agent.wxs").write_text(source, encoding="utf-8")
        (work / "payload.wxs").write_text(harvest(payload), encoding="utf-8")
        output = output.resolve()
        subprocess.run(
            [
                "wixl", "-a", "x64",
                "-D", f"Version={version}",
                "-D", f"ExeName={exe_name}",
                # wixl resolves sources only relative to its working folder (here "/").
                "-D", f"PayloadDir={payload.resolve().relative_to('/')}",
                "-o", str(output),
                str(work / "eid-agent.wxs"), str(work / "payload.wxs"),
            ],
            cwd="/",
            check=True,
            capture_output=True,
            text=True,
        )
    queries = _condition_queries() + _secure_queries(output) + _exe_action_queries(output)
    if queries:
        subprocess.run(
            ["msibuild", str(output), *_sql(queries)], check=True, capture_output=True, text=True
        )
    return output


# The SQL below is built from our own WiX source (ids and conditions), quoted for MSI SQL.
def _condition_queries() -> list[str]:
    return [
        f"UPDATE `Component` SET `Condition` = '{_quote(cond)}' "  # noqa: S608
        f"WHERE `Component` = '{_quote(comp)}'"
        for comp, cond in component_conditions().items()
    ]


def _exe_action_queries(msi: Path) -> list[str]:
    existing = subprocess.run(
        ["msiinfo", "export", str(msi), "CustomAction"], check=True, capture_output=True, text=True
    ).stdout
    present = {line.split("\t", 1)[0] for line in existing.splitlines()}
    return [
        "INSERT INTO `CustomAction` (`Action`, `Type`, `Source`, `Target`) "  # noqa: S608
        f"VALUES ('{_quote(action)}', {kind}, '{_quote(directory)}', '{_quote(command)}')"
        for action, (kind, directory, command) in exe_custom_actions().items()
        if action not in present
    ]


def _secure_queries(msi: Path) -> list[str]:
    secure = secure_properties()
    if not secure:
        return []
    existing = subprocess.run(
        ["msiinfo", "export", str(msi), "Property"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"^SecureCustomProperties\t(.*)$", existing, re.M)
    names = (match.group(1).split(";") if match else []) + secure
    value = _quote(";".join(dict.fromkeys(names)))
    if match:
        return [
            f"UPDATE `Property` SET `Value` = '{value}' "  # noqa: S608
            "WHERE `Property` = 'SecureCustomProperties'"
        ]
    return [
        "INSERT INTO `Property` (`Property`, `Value`) "  # noqa: S608
        f"VALUES ('SecureCustomProperties', '{value}')"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload", type=Path)
    parser.add_argument("--exe-name", help=f"program the Run entry starts (default {WINDOWED_EXE})")
    parser.add_argument("--version", default=None)
    parser.add_argument("-o", "--output", type=Path, default=REPO / "dist" / "eid-agent.msi")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    version = args.version or _repo_version()
    with tempfile.TemporaryDirectory(prefix="eid-payload-") as tmp:
        payload = args.payload
        exe_name = args.exe_name
        if payload is None and (REPO / "dist" / "eid-agent").is_dir():
            payload = REPO / "dist" / "eid-agent"
            exe_name = exe_name or "eid-agent"
        if payload is None:
            exe_name = exe_name or WINDOWED_EXE
            payload = make_standin_payload(Path(tmp), exe_name)
            logger.info("no payload given: using a stand-in payload")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            build(payload, args.output, version=version, exe_name=exe_name or WINDOWED_EXE)
        except subprocess.CalledProcessError as exc:
            logger.error("%s failed:\n%s%s", exc.cmd[0], exc.stdout or "", exc.stderr or "")
            return 1
        except FileNotFoundError as exc:
            logger.error("%s", exc)
            return 1
    logger.info("built %s (%d bytes)", args.output, args.output.stat().st_size)
    return 0


def _repo_version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__ = "([^"]+)"', text)
    return match.group(1) if match else "0.0.0"


if __name__ == "__main__":
    sys.exit(main())
