"""What a portal installs: ``pip install ./validator`` in a bare venv gives ``eid_validator`` and
nothing of the agent (no pyscard, websockets, pystray or Qt), and the real Web eID vectors
validate through that installed copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "data" / "webeid-tokens.json"

CHECK = r"""
import json, sys
from datetime import datetime
from cryptography import x509
import eid_validator
from eid_validator import AuthTokenValidator
assert eid_validator.__file__.startswith(sys.prefix), eid_validator.__file__  # the installed copy
valid = 0
for v in json.load(open(sys.argv[1], encoding="utf-8")):
    if not (v["expect"] == "valid" and v["issuerCert"]):
        continue
    clock = datetime.fromisoformat(v["validAt"].replace("Z", "+00:00"))
    anchor = x509.load_pem_x509_certificate(v["issuerCert"].encode())
    AuthTokenValidator(v["origin"], [anchor], clock=lambda c=clock: c).validate(v["token"], v["nonce"])
    valid += 1
banned = sorted(m for m in sys.modules if m.split(".")[0] in
                ("agent", "smartcard", "websockets", "pystray", "PySide6", "eid_emulator"))
print(json.dumps({"valid": valid, "banned": banned}))
"""


def test_bare_venv_install_validates_the_vectors(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # no PYTHONPATH: a worktree's sources would shadow the installed copy
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source = tmp_path / "validator"  # a copy: the build leaves build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "validator", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([python, "-m", "pip", "install", "-q", str(source)], check=True,
                   capture_output=True, text=True, timeout=600, env=bare)
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True,
                               capture_output=True, text=True, env=bare).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "eid-validator" in names
    assert not names & {"eid-agent", "pyscard", "websockets", "pystray", "pyside6-essentials", "pillow"}
    done = subprocess.run([python, "-c", CHECK, str(VECTORS)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=bare)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"valid": 6, "banned": []}
