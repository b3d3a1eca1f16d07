"""Machine policy in the forms the MSI writes (REG_SZ lists) and JSON writes."""

from __future__ import annotations

from agent.core.policy import parse_policy


def test_msi_reg_sz_with_spaces_and_semicolons() -> None:
    policy = parse_policy({"AllowedOrigins": "https://a.example; https://b.example:8443 https://c.example"})
    assert policy.allowed_origins == ("https://a.example", "https://b.example:8443", "https://c.example")


def test_reg_multi_sz_and_json_lists() -> None:
    policy = parse_policy({"AllowedOrigins": ["https://a.example", " https://b.example;https://c.example "]})
    assert policy.allowed_origins == ("https://a.example", "https://b.example", "https://c.example")
    assert parse_policy({"AllowedOrigins": ""}).allowed_origins == ()
