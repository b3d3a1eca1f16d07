"""The real agent process serves wss:// beside ws://: a Python TLS client that trusts only the
agent's local CA does a status round trip; the same Host/Origin checks hold on the TLS port;
the CA lands in the user's NSS store at first start; ``eid-agent diag`` shows both URLs, the
CA's fingerprint, expiry and where it is trusted; uninstall-certificate takes it out."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.tls import localca, truststore
from tests.agent_process import AgentProcess

pytestmark = pytest.mark.pcsc

PORTAL = "https://portal.example"


async def _status(url: str, ca: Path | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"ssl": ssl.create_default_context(cafile=str(ca))} if ca else {}
    async with connect(url, origin=PORTAL, proxy=None, **extra) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[no-any-return]


def _env(home: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_STATE_HOME=str(home / "state"), EID_AGENT_POLICY_FILE=str(home / "none.json"))
    return env


def test_wss_status_round_trip_trust_and_diag(pcscd, tmp_path: Path) -> None:
    with AgentProcess(pcscd, tmp_path, {}, allow_origins=(PORTAL,)) as agent:
        assert f"listening on wss://127.0.0.1:{agent.wss_port}" in agent.output
        over_tls = asyncio.run(_status(agent.wss_url, agent.ca_file))
        over_ws = asyncio.run(_status(agent.url, None))
        assert over_tls["result"] == over_ws["result"]
        assert over_tls["result"]["version"]
        # localhost and ::1 are in the leaf too
        asyncio.run(_status(f"wss://localhost:{agent.wss_port}", agent.ca_file))
        asyncio.run(_status(f"wss://[::1]:{agent.wss_port}", agent.ca_file))

        # A client that trusts only the public roots refuses the agent's certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(_status(agent.wss_url, None))  # websockets' default: the system roots
        # Host must name the TLS port on the TLS listener (DNS rebinding check).
        with pytest.raises(InvalidStatus) as refused:
            context = ssl.create_default_context(cafile=str(agent.ca_file))
            asyncio.run(_wrong_host(agent.wss_url, context, f"127.0.0.1:{agent.port}"))
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as foreign:
            asyncio.run(_foreign_origin(agent.wss_url, agent.ca_file))
        assert foreign.value.response.status_code == 403

        # First start put the CA into the user's Chromium NSS store; NSS validates the leaf.
        tls = localca.load(localca.TlsFiles.in_config_dir(tmp_path / "config" / "eid-agent"))
        assert tls is not None
        nssdb = tmp_path / ".pki" / "nssdb"
        if shutil.which("certutil"):
            assert truststore.nss_has(nssdb, truststore.nickname(tls))
            chain = subprocess.run(
                ["vfychain", "-d", f"sql:{nssdb}", "-u", "1", "-a", str(tls.files.cert)],
                capture_output=True, text=True,
            )
            assert chain.returncode == 0, chain.stderr

        diag = subprocess.run(
            [sys.executable, "-m", "agent", "diag"], env=_env(tmp_path),
            capture_output=True, text=True, timeout=60,
        ).stdout
    assert f"Local CA: SHA-256 {tls.ca_fingerprint}" in diag
    assert f"certificate expires {tls.expires:%Y-%m-%d}" in diag
    assert f"ws://127.0.0.1:{localca_default_port()}" in diag
    assert f"wss://127.0.0.1:{localca_default_port() + 1}" in diag
    if shutil.which("certutil"):
        assert f"trusted in NSS {nssdb}" in diag

        out = subprocess.run(
            [sys.executable, "-m", "agent", "uninstall-certificate"], env=_env(tmp_path),
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert not truststore.nss_has(nssdb, truststore.nickname(tls))
        assert not tls.files.ca.exists() and not tls.files.key.exists()


def localca_default_port() -> int:
    from agent.core.config import DEFAULT_PORT

    return DEFAULT_PORT


async def _wrong_host(url: str, context: ssl.SSLContext, host: str) -> None:
    async with connect(url, origin=PORTAL, ssl=context, proxy=None,  # type: ignore[arg-type]
                       additional_headers={"Host": host}):
        pass


async def _foreign_origin(url: str, ca: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    async with connect(url, origin="http://evil.example", ssl=context, proxy=None):  # type: ignore[arg-type]
        pass


def test_no_wss_flag_serves_ws_only(pcscd, tmp_path: Path) -> None:
    with AgentProcess(pcscd, tmp_path, {}, allow_origins=(PORTAL,), extra_args=("--no-wss",)) as agent:
        assert "wss://" not in agent.output
        asyncio.run(_status(agent.url, None))
        with pytest.raises(OSError):
            asyncio.run(_status(agent.wss_url, agent.ca_file))
    assert not (tmp_path / "config" / "eid-agent" / "tls").exists()


@pytest.mark.skipif(not shutil.which("certutil"), reason="libnss3-tools missing")
def test_agent_start_renews_a_certificate_near_expiry_and_swaps_the_trusted_ca(pcscd, tmp_path: Path) -> None:
    import datetime as dt

    config_dir = tmp_path / "config" / "eid-agent"
    made_long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=localca.LEAF_DAYS - 20)
    old = localca.ensure(config_dir, now=made_long_ago)  # 20 days left: due
    truststore.install_for_user(old, home=tmp_path)
    nssdb = tmp_path / ".pki" / "nssdb"
    assert truststore.nss_has(nssdb, truststore.nickname(old))
    with AgentProcess(pcscd, tmp_path, {}, allow_origins=(PORTAL,)) as agent:
        new = localca.load(localca.TlsFiles.in_config_dir(config_dir))
        assert new is not None and new.ca_fingerprint != old.ca_fingerprint
        assert f"local CA SHA-256 {new.ca_fingerprint}" in agent.output
        assert new.expires - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
        assert truststore.nss_has(nssdb, truststore.nickname(new))
        assert not truststore.nss_has(nssdb, truststore.nickname(old))
        asyncio.run(_status(agent.wss_url, agent.ca_file))


def test_unwritable_config_dir_leaves_ws_serving(pcscd, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "eid-agent").write_text("not a folder")  # the CA cannot be made
    with AgentProcess(pcscd, tmp_path, {}, allow_origins=(PORTAL,)) as agent:
        asyncio.run(_status(agent.url, None))
        assert "no wss:// listener" in agent.output
