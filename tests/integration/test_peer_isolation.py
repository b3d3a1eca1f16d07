"""Only the desktop user who owns the agent is served (issue 13).

Real agent process (``eid-agent serve``) on the private pcscd + vpcd with the virtual Belgian
card; clients are the stdlib WebSocket client run as root (the agent's user) or as
``nobody`` (another OS user) through ``runuser``. The fixed slot range is tested inside a
private network namespace so the real ports 24847... of this machine stay untouched.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data

from agent.peercred import diag_socket_uid, proc_socket_uid
from agent.tls import localca
from agent.ws.ports import SLOT_BASE
from tests.agent_process import AgentProcess, wait_until
from tests.peer_support import (
    OTHER_USER,
    SYSTEM_PYTHON,
    NetNamespace,
    other_user_agent_command,
    raw_client,
    require_other_user,
    squat,
)

PORTAL = "https://portal.example"
SURNAME = "Specimen"
CARD_NUMBER = "592123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


def _card(pki: TestPki) -> BeidCard:
    holder = Holder(pin="908172", surname=SURNAME, card_number=CARD_NUMBER)
    return BeidCard("1.8", make_card_data(pki, holder, "1.8"))


def _own_status_shows_card(host: str, port: int, netns: NetNamespace | None = None) -> dict[str, Any]:
    """Positive control: the agent's own user does get card data for the approved site."""
    result: dict[str, Any] = {}

    def shows_card() -> bool:
        nonlocal result
        result = raw_client(host, port, PORTAL, "status", netns=netns)
        return result["status"] == 101 and SURNAME in result["raw"]

    wait_until(shows_card, timeout=30)
    return result


def _refused_and_told_nothing(result: dict[str, Any]) -> None:
    assert result["status"] == 403, result
    assert result["replies"] == []
    assert "server" not in result["headers"]  # not even that an eid-agent answers
    body = result["raw"].split("\r\n\r\n", 1)[-1]
    assert body.strip() == "Forbidden"
    for secret in (SURNAME, CARD_NUMBER, "eid-agent", "portal.example", "approved", "reader"):
        assert secret.lower() not in result["raw"].lower()


@pytest.mark.pcsc
def test_another_os_user_with_an_approved_origin_is_refused(pki, pcscd, vpcd, tmp_path) -> None:
    require_other_user()
    vpcd(_card(pki))
    with AgentProcess(pcscd, tmp_path, {"pins": [], "consents": []},
                      allow_origins=(PORTAL,), log_level="INFO") as agent:
        mine = _own_status_shows_card("127.0.0.1", agent.port)
        assert mine["replies"][0]["result"]["approved"] is True
        for host in ("127.0.0.1", "::1"):
            theirs = raw_client(host, agent.port, PORTAL, "status", "getSigningCertificate",
                                "readIdentity", user=OTHER_USER)
            _refused_and_told_nothing(theirs)
        wait_until(lambda: agent.output.count("refused a connection of another OS user") >= 2)
        uid = subprocess.run(["id", "-u", OTHER_USER], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert f"another OS user (uid {uid})" in agent.output
        # the agent still serves its own user afterwards
        assert raw_client("::1", agent.port, PORTAL, "status")["status"] == 101
    assert "Traceback" not in agent.output


@pytest.mark.parametrize("lookup", [diag_socket_uid, proc_socket_uid])
def test_socket_owner_lookups_name_the_client_sockets_user(lookup) -> None:  # type: ignore[no-untyped-def]
    """Both Linux lookups (sock_diag, /proc/net/tcp{,6}), both families, for a client of our
    own uid and one made by ``nobody``; the server's own row is never taken for the client's."""
    require_other_user()
    other_uid = _ids(OTHER_USER)[0]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as server:
            server.bind((host, 0))
            server.listen()
            ours = server.getsockname()[:2]
            with socket.socket(family) as client:
                client.connect(ours)
                conn, peer = server.accept()
                with conn:
                    assert lookup(peer[:2], conn.getsockname()[:2]) == os.geteuid()
                    assert lookup((host, 1), conn.getsockname()[:2]) is None
            code = ("import socket, sys, time\n"
                    f"c = socket.create_connection(({host!r}, {ours[1]}))\n"
                    "print('ok', flush=True); sys.stdin.read()\n")
            theirs = subprocess.Popen(["runuser", "-u", OTHER_USER, "--", "/usr/bin/python3", "-c",
                                       code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
            try:
                assert theirs.stdout is not None and theirs.stdout.readline().strip() == "ok"
                conn, peer = server.accept()
                with conn:
                    assert lookup(peer[:2], conn.getsockname()[:2]) == other_uid
            finally:
                theirs.kill()
                theirs.wait()


@pytest.mark.pcsc
def test_two_users_agents_each_serve_only_their_own_user(pki, pcscd, vpcd, tmp_path) -> None:
    """Terminal server: root's agent takes slot 0, nobody's agent finds it taken and takes
    slot 1; each answers its own user's client and refuses the other's (the JS client tries
    the range until its own user's agent answers)."""
    require_other_user()
    vpcd(_card(pki))
    other_home = tmp_path / "nobody-home"
    other_home.mkdir()
    os.chown(other_home, *_ids(OTHER_USER))
    with NetNamespace() as netns:
        with AgentProcess(pcscd, tmp_path, {"pins": [], "consents": []}, allow_origins=(PORTAL,),
                          prefix=netns.prefix, port=None, log_level="INFO") as mine:
            assert mine.port == SLOT_BASE
            other = subprocess.Popen(
                [*netns.prefix, *other_user_agent_command(other_home, "--interaction", "none",
                                                          "--allow-origin", PORTAL)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            try:
                line = _wait_for_line(other, "listening on ws://")
                other_port = int(line.rsplit(":", 1)[1])
                assert other_port == SLOT_BASE + 2  # slot 1: ws 24849 (wss 24850)
                _own_status_shows_card("127.0.0.1", mine.port, netns)
                _refused_and_told_nothing(
                    raw_client("127.0.0.1", mine.port, PORTAL, "status", user=OTHER_USER, netns=netns))
                theirs = raw_client("127.0.0.1", other_port, PORTAL, "status",
                                    user=OTHER_USER, netns=netns)
                assert theirs["status"] == 101 and theirs["replies"][0]["result"]["version"]
                _refused_and_told_nothing(raw_client("::1", other_port, PORTAL, "status", netns=netns))
            finally:
                other.terminate()
                output = other.communicate(timeout=20)[0]
            assert "refused a connection of another OS user (uid 0)" in output, output


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line.strip()
    proc.kill()
    raise AssertionError(f"no {text!r} from the other user's agent:\n" + "".join(seen))


@pytest.mark.parametrize("held", ["::1", "127.0.0.1"])
def test_half_bound_slot_is_skipped_and_reported(held: str, pcscd, tmp_path) -> None:
    require_other_user()
    with NetNamespace() as netns:
        with squat(netns, held, SLOT_BASE):
            with AgentProcess(pcscd, tmp_path, {}, prefix=netns.prefix, port=None,
                              log_level="INFO") as agent:
                assert agent.port == SLOT_BASE + 2
                shown = f"[{held}]:{SLOT_BASE}" if ":" in held else f"{held}:{SLOT_BASE}"
                assert f"WARNING: another program holds {shown}" in agent.output
                # the agent listens on both addresses of its slot, nothing on the squatted one
                listening = netns.run("ss", "-Htlnp", capture_output=True, check=True).stdout
                assert f"127.0.0.1:{SLOT_BASE + 2} " in listening
                assert f"[::1]:{SLOT_BASE + 2} " in listening


def test_explicit_port_half_bound_refuses_to_run(pcscd, tmp_path) -> None:
    require_other_user()
    with NetNamespace() as netns:
        with squat(netns, "::1", 30000):
            env = {**pcscd.env(), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s"),
                   "XDG_CONFIG_HOME": str(tmp_path / "c"),
                   "EID_AGENT_POLICY_FILE": str(tmp_path / "none.json")}
            done = netns.run(
                sys.executable, "-m", "agent", "serve", "--port", "30000", "--no-tray",
                "--interaction", "none", "--no-log-file", env=env, capture_output=True,
                timeout=60, cwd=Path(__file__).resolve().parent.parent,
            )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refusing to serve on port 30000: another program holds [::1]:30000" in done.stderr
    assert "listening" not in done.stdout


def test_busy_slots_are_skipped_quietly_and_a_full_range_is_an_error(pcscd, tmp_path) -> None:
    """Every slot held on both addresses (other users' agents): a clear error, exit 3."""
    with NetNamespace() as netns:
        code = (
            "import socket, time\n"
            "keep = []\n"
            f"for port in range({SLOT_BASE}, {SLOT_BASE + 16}, 2):\n"
            "    for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
            "        s = socket.socket(fam); s.bind((host, port)); s.listen(); keep.append(s)\n"
            "print('bound', flush=True); time.sleep(600)\n"
        )
        holder = subprocess.Popen([*netns.prefix, "/usr/bin/python3", "-c", code],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
            env = {**pcscd.env(), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s"),
                   "XDG_CONFIG_HOME": str(tmp_path / "c"),
                   "EID_AGENT_POLICY_FILE": str(tmp_path / "none.json")}
            done = netns.run(
                sys.executable, "-m", "agent", "serve", "--no-tray", "--interaction", "none",
                "--no-log-file", env=env, capture_output=True, timeout=60,
                cwd=Path(__file__).resolve().parent.parent,
            )
        finally:
            holder.kill()
            holder.wait()
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"no free port pair in {SLOT_BASE}-{SLOT_BASE + 15}" in done.stderr
    assert "WARNING" not in done.stderr  # fully held slots are not squats


def test_the_stdlib_client_reports_an_unreachable_agent_as_an_error() -> None:
    """The stdlib client reports an unreachable agent as an error, not as a refusal."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = raw_client("127.0.0.1", port, PORTAL, "status")
    assert result["status"] is None and "ConnectionRefused" in result["error"]
    json.dumps(result)


def test_windows_tcp_table_rows_are_read_by_their_documented_layout() -> None:
    """``find_pid_in_tcp_table`` on buffers laid out as iphlpapi documents
    MIB_TCPTABLE_OWNER_PID / MIB_TCP6TABLE_OWNER_PID (the Windows call itself is untested
    here: no Windows on this machine)."""
    import ipaddress
    import struct

    from agent.peercred import find_pid_in_tcp_table

    def port(number: int) -> bytes:  # network byte order in the DWORD's low 16 bits
        return number.to_bytes(2, "big") + b"\0\0"

    lo4 = ipaddress.ip_address("127.0.0.1").packed
    rows4 = [  # state, local, lport, remote, rport, pid
        struct.pack("<I4s4s4s4sI", 2, lo4, port(24847), b"\0" * 4, port(0), 100),  # listener
        struct.pack("<I4s4s4s4sI", 5, lo4, port(24847), lo4, port(51000), 100),  # our end
        struct.pack("<I4s4s4s4sI", 5, lo4, port(51000), lo4, port(24847), 4242),  # client
    ]
    table4 = struct.pack("<I", len(rows4)) + b"".join(rows4)
    peer, local = ("127.0.0.1", 51000), ("127.0.0.1", 24847)
    assert find_pid_in_tcp_table(table4, False, peer, local) == 4242
    assert find_pid_in_tcp_table(table4, False, ("127.0.0.1", 51001), local) is None
    lo6 = ipaddress.ip_address("::1").packed
    rows6 = [  # local, scope, lport, remote, scope, rport, state, pid
        struct.pack("<16sI4s16sI4sII", lo6, 0, port(24847), lo6, 0, port(52000), 5, 100),
        struct.pack("<16sI4s16sI4sII", lo6, 0, port(52000), lo6, 0, port(24847), 5, 777),
    ]
    table6 = struct.pack("<I", len(rows6)) + b"".join(rows6)
    assert struct.calcsize("<16sI4s16sI4sII") == 56  # sizeof(MIB_TCP6ROW_OWNER_PID)
    assert find_pid_in_tcp_table(table6, True, ("::1", 52000), ("::1", 24847)) == 777


@pytest.mark.pcsc
def test_a_second_agent_of_the_same_user_does_not_take_another_slot(pcscd, tmp_path) -> None:
    """Slot 0 held by this user's own agent: the second one exits (it would fight the first
    over the readers), while another user's agent in slot 0 is skipped (previous test)."""
    with NetNamespace() as netns:
        first_home = tmp_path / "first"
        first_home.mkdir()
        with AgentProcess(pcscd, first_home, {}, prefix=netns.prefix, port=None) as first:
            assert first.port == SLOT_BASE
            env = {**pcscd.env(), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s"),
                   "XDG_CONFIG_HOME": str(tmp_path / "c"),
                   "EID_AGENT_POLICY_FILE": str(tmp_path / "none.json")}
            done = netns.run(
                sys.executable, "-m", "agent", "serve", "--no-tray", "--interaction", "none",
                "--no-log-file", env=env, capture_output=True, timeout=60,
                cwd=Path(__file__).resolve().parent.parent,
            )
            assert first.proc.poll() is None
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"already running for this user (port {SLOT_BASE})" in done.stderr
    assert "listening" not in done.stdout


@pytest.mark.pcsc
def test_wss_takes_the_slots_wss_port_and_refuses_other_users_too(pki, pcscd, vpcd, tmp_path) -> None:
    """The wss:// listener (issue 14) on the wss port of the agent's slot (24848), on both
    loopback addresses, with the peer check, Host check and card data rules of ws://."""
    require_other_user()
    vpcd(_card(pki))
    with NetNamespace() as netns:
        with AgentProcess(pcscd, tmp_path, {"pins": [], "consents": []}, allow_origins=(PORTAL,),
                          prefix=netns.prefix, port=None, log_level="INFO") as agent:
            assert (agent.port, agent.wss_port) == (SLOT_BASE, SLOT_BASE + 1)
            listening = netns.run("ss", "-Htln", capture_output=True, check=True).stdout
            for address in ("127.0.0.1", "[::1]"):
                assert f"{address}:{SLOT_BASE + 1} " in listening, listening
            ca = agent.ca_file.read_text(encoding="ascii")
            for host in ("127.0.0.1", "::1"):
                result: dict[str, Any] = {}

                def shows_card(host: str = host) -> bool:
                    nonlocal result
                    result = raw_client(host, agent.wss_port, PORTAL, "status", netns=netns,
                                        tls_ca=ca)
                    return result["status"] == 101 and SURNAME in result["raw"]

                wait_until(shows_card, timeout=30)
                assert result["tls"] in ("TLSv1.2", "TLSv1.3")
                theirs = raw_client(host, agent.wss_port, PORTAL, "status", "getSigningCertificate",
                                    user=OTHER_USER, netns=netns, tls_ca=ca)
                # closed at accept, before TLS: not even the certificate is seen
                assert theirs["status"] is None and theirs["replies"] == [], theirs
                assert theirs["error"] and "CERTIFICATE" not in theirs["error"], theirs
            rebound = raw_client("127.0.0.1", agent.wss_port, PORTAL, "status", netns=netns,
                                 tls_ca=ca, host_port=agent.port)
            assert rebound["status"] == 403 and rebound["replies"] == []
            untrusted = raw_client("127.0.0.1", agent.wss_port, PORTAL, "status", netns=netns,
                                   tls_ca=_other_ca())
            assert untrusted["status"] is None and "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]
    assert "Traceback" not in agent.output


def _other_ca() -> str:
    """A CA that did not sign the agent's certificate (PEM)."""
    with tempfile.TemporaryDirectory() as folder:
        return localca.ensure(Path(folder)).files.ca.read_text(encoding="ascii")


HOLD_SOURCE = r"""
import json, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(count):
    held.append(socket.create_connection((host, port), timeout=5))
closed = 0
deadline = time.monotonic() + 3
for sock in held:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        closed += sock.recv(1) == b""
    except ConnectionResetError:
        closed += 1
    except socket.timeout:
        pass
print(json.dumps({"opened": len(held), "closed": closed}))
"""


@pytest.mark.pcsc
def test_other_users_cannot_hold_tls_handshakes_open(pki, pcscd, tmp_path) -> None:
    """Raw TCP connections to the wss:// port that never start TLS: another OS user's are
    closed at once (they would otherwise sit out the TLS timeout outside the handshake cap);
    this user's own stay open until that timeout."""
    require_other_user()
    with NetNamespace() as netns:
        with AgentProcess(pcscd, tmp_path, {"pins": [], "consents": []}, allow_origins=(PORTAL,),
                          prefix=netns.prefix, port=None, log_level="INFO") as agent:
            def hold(user: str | None, count: int) -> dict[str, int]:
                command = [*netns.prefix, *(["runuser", "-u", user, "--"] if user else []),
                           SYSTEM_PYTHON, "-c", HOLD_SOURCE, "127.0.0.1", str(agent.wss_port),
                           str(count)]
                done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                      check=True)
                result: dict[str, int] = json.loads(done.stdout)
                return result

            theirs = hold(OTHER_USER, 100)
            assert theirs == {"opened": 100, "closed": 100}
            own = hold(None, 5)
            assert own == {"opened": 5, "closed": 0}  # waiting for TLS, as a browser would
            output = agent.stop()
    assert output.count("closed a wss:// connection of another OS user before TLS") >= 1
    assert "Traceback" not in output
