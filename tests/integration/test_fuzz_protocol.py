"""Hypothesis on the JSON-RPC layer: the sans-I/O dispatcher (``agent/ws/protocol.py``)
with the fake session, then a few hundred real socket messages to the real agent process.

Properties: every message gets either nothing (a notification) or one well-formed
JSON-RPC response whose error, if any, carries a known string code; nothing raises, nothing
hangs, the pending counter returns to zero, and afterwards the agent still answers
``status`` on the same connection.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from agent.ws.errors import ErrorCode
from agent.ws.protocol import METHODS, Call, RpcProtocol, encode
from bench.fuzz_profiles import load_profile, scaled
from tests.agent_process import AgentProcess
from tests.ws_fakes import FakeService

load_profile()

ORIGIN = "https://portal.example"
CODES = {code.name_code for code in ErrorCode}
PARAM_NAMES = ["challengeNonce", "certificate", "hash", "hashFunction", "options", "photo",
               "pinName", "userInteractionTimeout", "lang", "x", ""]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=8),
                                            inner, max_size=4)),
    max_leaves=12,
)
option_values = st.dictionaries(
    st.sampled_from(["userInteractionTimeout", "lang", "extra"]),
    st.one_of(json_scalars, st.sampled_from([1, 0, -5, 1e300, "en", "fr-BE", "x" * 20])),
    max_size=3,
)
params = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(PARAM_NAMES),
                    st.one_of(json_scalars, option_values, st.just("A" * 20_000)), max_size=5),
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), json_scalars),
        "id": st.one_of(st.integers(), st.text(max_size=10), st.none(), st.booleans(),
                        st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)),
        "method": st.one_of(st.sampled_from([*METHODS, "event", "rpc.discover"]), json_scalars),
        "params": params,
        "result": json_scalars,
    },
)
messages = st.one_of(
    requests.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from(['{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":NaN}}',
                     "[" * 5000, '{"jsonrpc":"2.0","id":1e999,"method":"status"}',
                     '{"jsonrpc":"2.0","id":1,"method":"status","params":[]}']),
)


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON (a browser's JSON.parse refuses it)")


def check_response(response: dict[str, Any]) -> None:
    json.loads(encode(response), parse_constant=_no_constants)  # what the server sends
    assert response["jsonrpc"] == "2.0" and "id" in response
    assert ("result" in response) != ("error" in response), response
    if "error" in response:
        error = response["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str)
        assert error["data"]["code"] in CODES, error


async def dispatch(proto: RpcProtocol, message: str | bytes) -> dict[str, Any] | None:
    outcome = proto.receive(message)
    if isinstance(outcome, Call):
        return await asyncio.wait_for(proto.execute(outcome), timeout=5)
    return outcome


@given(st.lists(messages, min_size=1, max_size=6))
@example(["[" * 100_000])
@example(['{"jsonrpc":"2.0","id":1,"method":"sign","params":{"options":{"lang":"' + "e" * 5000 + '"}}}'])
def test_dispatcher_answers_every_message(batch: list[str | bytes]) -> None:
    session = FakeService().open_client(ORIGIN)
    proto = RpcProtocol(session, emit=lambda _event: None, max_message_size=64 * 1024)

    async def run() -> None:
        for message in batch:
            response = await dispatch(proto, message)
            if response is not None:
                check_response(response)
        assert proto.pending == 0
        status = await dispatch(proto, json.dumps({"jsonrpc": "2.0", "id": "s", "method": "status"}))
        assert status is not None and "result" in status, status

    asyncio.run(run())


@pytest.mark.parametrize("request_id", ["1e999", "-1E310", "1E310"])
def test_an_infinite_id_is_an_invalid_request_answered_in_json(request_id: str) -> None:
    """Found by fuzzing: json.loads reads 1e999 as inf; the response carried ``Infinity``
    (not JSON) after an error traceback in the log."""
    proto = RpcProtocol(FakeService().open_client(ORIGIN), emit=lambda _event: None)
    response = asyncio.run(dispatch(
        proto, f'{{"jsonrpc":"2.0","id":{request_id},"method":"status"}}'))
    assert response is not None
    check_response(response)
    assert response["id"] is None
    assert response["error"]["data"]["code"] == "ERR_EID_INVALID_REQUEST"


@given(requests)
def test_valid_envelopes_with_any_params(request: dict[str, Any]) -> None:
    """Requests with a proper envelope: a Call only when the params bind; else a typed error."""
    session = FakeService().open_client(ORIGIN)
    proto = RpcProtocol(session, emit=lambda _event: None)
    request = {**request, "jsonrpc": "2.0", "id": 7}
    request.pop("result", None)
    if not isinstance(request.get("method"), str):
        request["method"] = "status"
    outcome = proto.receive(json.dumps(request))
    if isinstance(outcome, Call):
        assert outcome.method in METHODS and outcome.id == 7
        response = asyncio.run(proto.execute(outcome))
        check_response(response)
    else:
        assert outcome is not None
        check_response(outcome)
        assert outcome["error"]["data"]["code"] != "ERR_WEBEID_NATIVE_FATAL"


# ------------------------------------------------------------------------------ real socket


@pytest.fixture(scope="module")
def agent(pcscd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """The real agent, no card, the fuzzing origin not approved (every card method ends at
    the consent prompt, which the exhausted script cancels: nothing waits for a card)."""
    home: Path = tmp_path_factory.mktemp("fuzz-agent")
    with AgentProcess(pcscd, home, {}, log_level="WARNING") as process:
        yield process


class Socket:
    """One connection, reopened when the server closes it (oversized frames do)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.sentinel = 0

    def get(self) -> ClientConnection:
        if self.ws is None:
            ws = connect(self.url, origin=ORIGIN, max_size=None, open_timeout=10)
            self.ws = ws.__enter__()  # closed in close() or by the server
        return self.ws

    def roundtrip(self, message: str | bytes) -> list[dict[str, Any]]:
        """Send ``message`` then a status; return what came back before the status answer."""
        self.sentinel += 1
        marker = f"sentinel-{self.sentinel}"
        ws = self.get()
        try:
            ws.send(message)
            ws.send(json.dumps({"jsonrpc": "2.0", "id": marker, "method": "status"}))
            seen = []
            while True:
                answer = json.loads(ws.recv(timeout=10), parse_constant=_no_constants)
                if answer.get("id") == marker:
                    assert "result" in answer, answer
                    return seen
                seen.append(answer)
        except ConnectionClosed:
            self.ws = None
            # The server may close on protocol abuse; it must still accept a new connection.
            self.get().send(json.dumps({"jsonrpc": "2.0", "id": marker, "method": "status"}))
            assert json.loads(self.get().recv(timeout=10))["id"] == marker
            return []

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


@pytest.mark.pcsc
def test_real_socket_messages(agent: AgentProcess) -> None:
    socket = Socket(agent.url)
    sent: list[int] = []

    @settings(max_examples=scaled(300), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(messages)
    def one(message: str | bytes) -> None:
        sent.append(1)
        for response in socket.roundtrip(message):
            if "id" in response:
                check_response(response)

    try:
        one()
        # Afterwards: a fresh connection still gets status.
        with connect(agent.url, origin=ORIGIN) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
            assert "result" in json.loads(ws.recv(timeout=10))
    finally:
        socket.close()
    report = os.environ.get("EID_FUZZ_SOCKET_REPORT")  # bench/fuzz_long.py counts these
    if report:
        Path(report).write_text(str(len(sent)), encoding="utf-8")
    assert agent.proc.poll() is None, agent.output
    assert "Traceback" not in agent.output, agent.output[-3000:]
