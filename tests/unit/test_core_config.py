"""Machine policy, config folders, the approvals file and the console prompts."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from agent.app.console import ConsoleInteraction
from agent.cards.base import PinInfo
from agent.core import config as config_module
from agent.core.config import AgentConfig
from agent.core.consent import ApprovalStore
from agent.core.interaction import ConsentDecision, ConsentKind, ConsentRequest, Operation, PinRequest
from agent.core.origin import normalize_origin
from agent.core.policy import MachinePolicy, load_policy, parse_policy
from agent.errors import OriginNotAllowedError, UserCancelledError


def test_policy_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"AllowedOrigins": ["https://a.example"], "Port": 25000,
                                "AllowUserApproval": False, "LogLevel": "DEBUG"}))
    monkeypatch.setenv("EID_AGENT_POLICY_FILE", str(path))
    policy = load_policy()
    assert policy == MachinePolicy(("https://a.example",), 25000, False, "DEBUG")
    config = AgentConfig.load(port=1234, log_level="INFO")
    assert config.port == 25000 and config.effective_log_level == "DEBUG"  # policy wins


def test_missing_or_broken_policy_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EID_AGENT_POLICY_FILE", str(tmp_path / "absent.json"))
    assert load_policy() == MachinePolicy()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("EID_AGENT_POLICY_FILE", str(broken))
    assert load_policy() == MachinePolicy()


def test_bad_policy_values_are_skipped_one_by_one() -> None:
    policy = parse_policy({"AllowedOrigins": "https://one.example", "Port": 70000,
                           "AllowUserApproval": 0, "LogLevel": 5})
    assert policy == MachinePolicy(("https://one.example",), None, False, None)
    assert parse_policy({"Port": True}).port is None  # a REG_DWORD bool is not a port


@pytest.mark.parametrize(
    ("platform", "env", "config_dir", "log_dir"),
    [
        ("linux", {"HOME": "/h", "XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s"},
         "/c/eid-agent", "/s/eid-agent/logs"),
        ("linux", {"HOME": "/h"}, "/h/.config/eid-agent", "/h/.local/state/eid-agent/logs"),
        ("win32", {"APPDATA": "/r", "LOCALAPPDATA": "/l"}, "/r/eid-agent", "/l/eid-agent/logs"),
        ("darwin", {"HOME": "/h"}, "/h/Library/Application Support/eid-agent",
         "/h/Library/Logs/eid-agent"),
    ],
)
def test_platform_folders(platform: str, env: dict[str, str], config_dir: str, log_dir: str) -> None:
    assert config_module.default_config_dir(env, platform) == Path(config_dir)
    assert config_module.default_log_dir(env, platform) == Path(log_dir)


def test_page_timeout_is_capped() -> None:
    config = AgentConfig(config_dir=Path("/nonexistent"), interaction_timeout=120)
    assert config.timeout(None) == 120 and config.timeout(30) == 30 and config.timeout(900) == 120


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [("https://Example.ORG", "https://example.org"), ("https://a.example:443", "https://a.example"),
     ("https://a.example:8443", "https://a.example:8443"), ("http://localhost:3000",
      "http://localhost:3000"), ("http://[::1]:80", "http://[::1]")],
)
def test_origin_normalization(origin: str, normalized: str) -> None:
    assert normalize_origin(origin) == normalized


@pytest.mark.parametrize("origin", ["http://example.org", "https://a.example/", "null", "",
                                    "https://user@a.example", "wss://a.example", "https://a.example:0"])
def test_bad_origins(origin: str) -> None:
    with pytest.raises(OriginNotAllowedError):
        normalize_origin(origin)


def test_approval_store_roundtrip_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "approved-origins.json"
    store = ApprovalStore(path)
    store.approve("https://a.example")
    store.approve("https://a.example", ConsentKind.IDENTITY)
    store.approve("https://b.example")
    again = ApprovalStore(path)
    assert again.origins() == ("https://a.example", "https://b.example")
    assert again.origins(ConsentKind.IDENTITY) == ("https://a.example",)
    assert again.revoke("https://a.example") and not again.revoke("https://a.example")
    assert ApprovalStore(path).origins() == ("https://b.example",)
    assert sorted(p.name for p in path.parent.iterdir()) == ["approved-origins.json"]
    path.write_text('{"origins": ["not", "a", "mapping"]}')
    damaged = ApprovalStore(path)
    assert damaged.origins() == ()  # nothing allowed by accident
    assert (path.parent / "approved-origins.json.corrupt").exists()


def _pin_request() -> PinRequest:
    return PinRequest("https://a.example", Operation.AUTHENTICATE, PinInfo(1, "PIN"), 2,
                      "BE eID (applet 1.8)", "Reader A")


def test_console_prompts() -> None:
    out = io.StringIO()
    lines = iter(["always", "2"])
    secrets = iter(["1234", ""])
    console = ConsoleInteraction(output=out, read_secret=lambda prompt: next(secrets),
                                 read_line=lambda prompt: next(lines))

    async def scenario() -> None:
        assert await console.ask_pin(_pin_request()) == "1234"
        with pytest.raises(UserCancelledError):
            await console.ask_pin(_pin_request())
        decision = await console.ask_consent(ConsentRequest("https://a.example", ConsentKind.SITE))
        assert decision is ConsentDecision.ALLOW_ALWAYS

    asyncio.run(scenario())
    text = out.getvalue()
    assert "https://a.example" in text and "2 tries left" in text and "1234" not in text
