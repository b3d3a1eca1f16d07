"""The MSI: build it with wixl from packaging/windows/eid-agent.wxs and read its tables.

wixl (Debian's msitools) stands in for the WiX toolset here, around a small payload shaped
like the PyInstaller output. The checks read the tables with ``msiinfo export`` and the
files with ``msiextract``, so they prove the source compiles and says what docs/deploy.md
claims: per-machine x64 install, Run entry for every user, policy values bound to the public
properties (and only written when set), major upgrades, a clean uninstall.
test_msi_wine.py installs, upgrades and removes the same MSI under Wine's msiexec.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WXS = ROOT / "packaging" / "windows" / "eid-agent.wxs"
BUILD = ROOT / "packaging" / "windows" / "build_msi.py"
UPGRADE_CODE = "{5AA5B26C-69D8-48D5-96B3-3594A71D092A}"
POLICY_KEY = r"SOFTWARE\Policies\eid-agent"
REMEMBER_KEY = r"SOFTWARE\eid-agent\Install"
RUN_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
HKLM = "2"
PROPERTIES = ("ALLOWEDORIGINS", "PORT", "ALLOWUSERAPPROVAL", "LOGLEVEL")

pytestmark = pytest.mark.skipif(
    not (shutil.which("wixl") and shutil.which("msiinfo") and shutil.which("msibuild")),
    reason="wixl and msitools are needed (Debian packages wixl, msitools)",
)

PAYLOAD = {
    "eid-agent.exe": b"console stand-in\n",
    "eid-agentw.exe": b"windowed stand-in\n",
    "eid-agent-webeid-host.exe": b"web eid host stand-in\n",
    "_internal/base_library.zip": b"PK\x05\x06" + bytes(18),
    "_internal/tray/locale/fr/LC_MESSAGES/eid-agent.mo": b"\xde\x12\x04\x95",
    "_internal/clients/js/eid-agent.js": b"export {};\n",
}


def make_payload(folder: Path) -> Path:
    for rel, data in PAYLOAD.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def build(payload: Path, output: Path, version: str = "1.2.3") -> Path:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--payload", str(payload), "--version", version,
         "-o", str(output)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """Rows of one table as dicts (``msiinfo export``: header, types, key line, rows)."""
    text = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True,
                          text=True, check=True).stdout
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[3:] if line]


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("msi")
    return build(make_payload(work / "payload"), work / "eid-agent.msi")


def props(msi: Path) -> dict[str, str]:
    return {r["Property"]: r["Value"] for r in table(msi, "Property")}


def test_product_properties(msi: Path) -> None:
    p = props(msi)
    assert p["UpgradeCode"] == UPGRADE_CODE
    assert UPGRADE_CODE.strip("{}") in WXS.read_text()
    assert p["ProductName"] == "eid-agent" and p["ProductVersion"] == "1.2.3"
    assert p["ALLUSERS"] == "1"  # per-machine
    secure = p["SecureCustomProperties"].split(";")
    assert set(PROPERTIES) <= set(secure) and "WIX_UPGRADE_DETECTED" in secure
    # The public properties have no default: nothing is written unless IT sets them.
    assert not set(PROPERTIES) & set(p)
    summary = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True,
                             text=True, check=True).stdout
    assert "Template: x64;1033" in summary


def test_major_upgrade(msi: Path, tmp_path: Path) -> None:
    rows = table(msi, "Upgrade")
    assert {r["UpgradeCode"] for r in rows} == {UPGRADE_CODE}
    older = next(r for r in rows if r["ActionProperty"] == "WIX_UPGRADE_DETECTED")
    assert older["VersionMin"] == "" and older["VersionMax"] == "1.2.3"
    assert not int(older["Attributes"]) & 2  # not only-detect: older versions are removed
    newer = next(r for r in rows if r["ActionProperty"] == "WIX_DOWNGRADE_DETECTED")
    assert newer["VersionMin"] == "1.2.3" and int(newer["Attributes"]) & 2  # only detect
    conditions = {r["Condition"]: r["Description"] for r in table(msi, "LaunchCondition")}
    assert "newer version" in conditions["NOT WIX_DOWNGRADE_DETECTED"]

    seq = {r["Action"]: int(r["Sequence"]) for r in table(msi, "InstallExecuteSequence")}
    assert seq["FindRelatedProducts"] < seq["AppSearch"] < seq["LaunchConditions"]
    assert seq["InstallValidate"] < seq["RemoveExistingProducts"] < seq["InstallInitialize"]

    # A rebuild of the same payload is a new product of the same upgrade family, and keeps
    # the component GUIDs (so files move cleanly from one version to the next).
    again = build(make_payload(tmp_path / "payload"), tmp_path / "next.msi", version="1.2.4")
    assert props(again)["ProductCode"] != props(msi)["ProductCode"]
    assert props(again)["UpgradeCode"] == UPGRADE_CODE
    ids = {r["Component"]: r["ComponentId"] for r in table(msi, "Component")}
    assert ids == {r["Component"]: r["ComponentId"] for r in table(again, "Component")}


def test_directories_and_files(msi: Path, tmp_path: Path) -> None:
    dirs = {r["Directory"]: r for r in table(msi, "Directory")}
    assert dirs["TARGETDIR"]["Directory_Parent"] == ""
    assert dirs["ProgramFiles64Folder"]["Directory_Parent"] == "TARGETDIR"
    assert dirs["INSTALLFOLDER"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert dirs["INSTALLFOLDER"]["DefaultDir"] == "eid-agent"

    def path_of(directory: str) -> str:
        parts = []
        while directory != "INSTALLFOLDER":
            parts.append(dirs[directory]["DefaultDir"])
            directory = dirs[directory]["Directory_Parent"]
        return "/".join(reversed(parts))

    components = {r["Component"]: r for r in table(msi, "Component")}
    files = {}
    for row in table(msi, "File"):
        comp = components[row["Component_"]]
        assert comp["KeyPath"] == row["File"]
        assert int(comp["Attributes"]) & 256  # 64-bit component
        rel = "/".join(p for p in (path_of(comp["Directory_"]), row["FileName"]) if p)
        files[rel] = int(row["FileSize"])
    manifests = {"eu.webeid.json", "eu.webeid.firefox.json"}  # written by build_msi.py
    assert manifests <= set(files)
    assert {k: v for k, v in files.items() if k not in manifests} == {
        rel: len(data) for rel, data in PAYLOAD.items()}

    feature = {r["Component_"] for r in table(msi, "FeatureComponents")}
    assert feature == set(components)
    media = table(msi, "Media")
    assert media[0]["Cabinet"] == "#payload.cab"  # embedded

    out = tmp_path / "extract"
    subprocess.run(["msiextract", "-C", str(out), str(msi)], check=True, capture_output=True)
    for rel, data in PAYLOAD.items():
        assert (out / "eid-agent" / rel).read_bytes() == data


def registry(msi: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["Key"], r["Name"]): r for r in table(msi, "Registry")}


def test_autostart_for_every_user(msi: Path) -> None:
    run = registry(msi)[(RUN_KEY, "eid-agent")]
    assert run["Root"] == HKLM
    assert run["Value"] == '"[INSTALLFOLDER]eid-agentw.exe" serve'
    comp = {r["Component"]: r for r in table(msi, "Component")}[run["Component_"]]
    assert comp["Condition"] == ""  # always installed
    assert comp["KeyPath"] == run["Registry"]
    # The program it starts is installed right in INSTALLFOLDER.
    components = {r["Component"]: r for r in table(msi, "Component")}
    exe = next(r for r in table(msi, "File") if r["FileName"] == "eid-agentw.exe")
    assert components[exe["Component_"]]["Directory_"] == "INSTALLFOLDER"


def test_policy_values_bound_to_properties(msi: Path) -> None:
    reg = registry(msi)
    comps = {r["Component"]: r for r in table(msi, "Component")}
    expected = {
        "AllowedOrigins": ("ALLOWEDORIGINS", "[ALLOWEDORIGINS]"),   # REG_SZ
        "Port": ("PORT", "#[PORT]"),                                # REG_DWORD
        "AllowUserApproval": ("ALLOWUSERAPPROVAL", "#[ALLOWUSERAPPROVAL]"),
        "LogLevel": ("LOGLEVEL", "[LOGLEVEL]"),
    }
    for name, (prop, value) in expected.items():
        policy = reg[(POLICY_KEY, name)]
        assert policy["Root"] == HKLM and policy["Value"] == value
        comp = comps[policy["Component_"]]
        # Written only when the property is set; the policy value is the component's key.
        assert comp["Condition"] == prop and comp["KeyPath"] == policy["Registry"]
        remembered = reg[(REMEMBER_KEY, name)]
        assert remembered["Value"] == f"[{prop}]" and remembered["Component_"] == comp["Component"]


def test_properties_survive_a_major_upgrade(msi: Path) -> None:
    search = {r["Property"]: r["Signature_"] for r in table(msi, "AppSearch")}
    locators = {r["Signature_"]: r for r in table(msi, "RegLocator")}
    actions = {r["Action"]: r for r in table(msi, "CustomAction")}
    seq = {r["Action"]: r for r in table(msi, "InstallExecuteSequence")}
    for prop, name in zip(PROPERTIES, ("AllowedOrigins", "Port", "AllowUserApproval",
                                        "LogLevel"), strict=True):
        loc = locators[search[f"OLD_{prop}"]]
        assert (loc["Root"], loc["Key"], loc["Name"]) == (HKLM, REMEMBER_KEY, name)
        assert int(loc["Type"]) & 16  # 64-bit registry view
        restore = [a for a in actions.values() if a["Source"] == prop]
        assert len(restore) == 1 and int(restore[0]["Type"]) & 0x3F == 51  # set property
        assert restore[0]["Target"] == f"[OLD_{prop}]"
        step = seq[restore[0]["Action"]]
        # The command line wins; restored before the component conditions are evaluated.
        assert step["Condition"] == f"NOT {prop} AND OLD_{prop}"
        assert int(seq["AppSearch"]["Sequence"]) < int(step["Sequence"]) < int(
            seq["CostFinalize"]["Sequence"])


def test_property_validation(msi: Path) -> None:
    conditions = {r["Condition"]: r["Description"] for r in table(msi, "LaunchCondition")}
    approval = next(c for c, d in conditions.items() if d.startswith("ALLOWUSERAPPROVAL"))
    assert 'ALLOWUSERAPPROVAL = "0"' in approval and 'ALLOWUSERAPPROVAL = "1"' in approval
    port = next(c for c, d in conditions.items() if d.startswith("PORT"))
    assert re.search(r"PORT >= 1 AND PORT <= 65535", port)


def test_uninstall_is_clean_and_keeps_user_data(msi: Path) -> None:
    # Nothing permanent (attribute 0x10) or shared: uninstall removes every component.
    for comp in table(msi, "Component"):
        assert not int(comp["Attributes"]) & 0x10, comp
    # Only per-machine registry values, nothing in users' hives (Root 1 = HKCU, 3 = HKU).
    assert {r["Root"] for r in table(msi, "Registry")} == {HKLM}
    # No custom action deletes anything, and no RemoveFile rows reach user folders: the
    # settings and logs in each user's profile stay.
    assert not table(msi, "RemoveFile")
    # (The only programs run are the browser-policy writer and remover; see below.)
    for action in table(msi, "CustomAction"):
        assert int(action["Type"]) & 0x3F == 51 or \
            " write-browser-policy --windows-registry " in action["Target"], action
    assert not table(msi, "ServiceInstall")


def test_web_eid_host_registered_for_chrome_edge_and_firefox(msi: Path, tmp_path: Path) -> None:
    import json

    reg = registry(msi)
    chrome = reg[(r"SOFTWARE\Google\Chrome\NativeMessagingHosts\eu.webeid", "")]
    firefox = reg[(r"SOFTWARE\Mozilla\NativeMessagingHosts\eu.webeid", "")]
    assert chrome["Root"] == firefox["Root"] == HKLM
    assert chrome["Value"] == "[INSTALLFOLDER]eu.webeid.json"  # Edge reads Chrome's key too
    assert firefox["Value"] == "[INSTALLFOLDER]eu.webeid.firefox.json"
    comps = {r["Component"]: r for r in table(msi, "Component")}
    for row in (chrome, firefox):
        assert comps[row["Component_"]]["Condition"] == 'WEBEID = "1"'
    assert props(msi)["WEBEID"] == "1"
    assert "WEBEID" in props(msi)["SecureCustomProperties"].split(";")
    out = tmp_path / "extract"
    subprocess.run(["msiextract", "-C", str(out), str(msi)], check=True, capture_output=True)
    chrome_manifest = json.loads((out / "eid-agent" / "eu.webeid.json").read_text())
    firefox_manifest = json.loads((out / "eid-agent" / "eu.webeid.firefox.json").read_text())
    assert chrome_manifest["name"] == firefox_manifest["name"] == "eu.webeid"
    assert chrome_manifest["path"] == "eid-agent-webeid-host.exe"  # next to the manifest
    assert (out / "eid-agent" / chrome_manifest["path"]).is_file()
    assert "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/" in chrome_manifest["allowed_origins"]
    assert "chrome-extension://gnmckgbandlkacikdndelhfghdejfido/" in chrome_manifest["allowed_origins"]
    assert firefox_manifest["allowed_extensions"] == ["{e68418bc-f2b0-4459-a9ea-3e72b6751b07}"]


def test_browser_policies_from_allowedorigins(msi: Path) -> None:
    """ALLOWEDORIGINS becomes Chrome's and Edge's Local Network Access lists: the installed
    agent writes them (deferred, as LocalSystem, after InstallFiles) and removes them on
    uninstall (before RemoveFiles, while the program is still there)."""
    actions = {r["Action"]: r for r in table(msi, "CustomAction")}
    seq = {r["Action"]: r for r in table(msi, "InstallExecuteSequence")}
    write, remove = actions["WriteBrowserPolicy"], actions["RemoveBrowserPolicy"]
    for action in (write, remove):
        kind = int(action["Type"])
        assert kind & 0x3F == 34 and action["Source"] == "INSTALLFOLDER"  # exe in a folder
        assert kind & 1024 and kind & 2048  # deferred, no impersonation (elevated)
        assert action["Target"].startswith('"[INSTALLFOLDER]eid-agent.exe" write-browser-policy ')
    assert write["Target"].endswith('--windows-registry --origins "[ALLOWEDORIGINS]"')
    assert not int(write["Type"]) & 64  # a failure fails the install (IT sees it)
    assert remove["Target"].endswith("--windows-registry --remove")
    assert seq["WriteBrowserPolicy"]["Condition"] == 'ALLOWEDORIGINS AND NOT REMOVE~="ALL"'
    assert seq["RemoveBrowserPolicy"]["Condition"] == 'REMOVE~="ALL"'
    order = {name: int(seq[name]["Sequence"]) for name in (
        "InstallInitialize", "RemoveFiles", "RemoveBrowserPolicy", "InstallFiles",
        "WriteBrowserPolicy", "InstallFinalize")}
    assert order["InstallInitialize"] < order["RemoveBrowserPolicy"] < order["RemoveFiles"]
    assert order["InstallFiles"] < order["WriteBrowserPolicy"] < order["InstallFinalize"]
    # The property reaches the elevated side.
    assert "ALLOWEDORIGINS" in props(msi)["SecureCustomProperties"].split(";")
