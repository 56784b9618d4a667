from __future__ import annotations

import json

import pytest
import structlog

from infrastructure.observability.logging import REDACTED, configure_logging, scrub_value


def test_secret_keys_and_bearer_values_are_scrubbed() -> None:
    event = {
        "event": "http.request",
        "headers": {"Authorization": "Bearer abc.def.ghi", "Cookie": "sid=1", "accept": "*/*"},
        "password": "hunter2hunter2",
        "refresh_token": "r3fr3sh",
        "accessToken": "a",
        "jwt_secret": "s",
        "note": "sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig123 to the api",
        "token_count": 12,
        "items": [{"api_key": "k"}],
    }
    scrubbed = scrub_value(event)
    assert isinstance(scrubbed, dict)
    assert scrubbed["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "accept": "*/*"}
    for key in ("password", "refresh_token", "accessToken", "jwt_secret"):
        assert scrubbed[key] == REDACTED
    assert "eyJ" not in scrubbed["note"] and "Bearer [REDACTED]" in scrubbed["note"]
    assert scrubbed["token_count"] == 12
    assert scrubbed["items"] == [{"api_key": REDACTED}]


def test_bearer_in_any_case_and_bare_jwts_are_scrubbed_in_text() -> None:
    assert scrub_value("header BEARER abc123xyz sent") == "header BEARER [REDACTED] sent"
    assert scrub_value("bEaReR abc123xyz") == "bEaReR [REDACTED]"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert scrub_value(f"token={jwt};") == f"token={REDACTED};"
    assert scrub_value("plain text, nothing to hide") == "plain text, nothing to hide"


def test_configured_logger_emits_scrubbed_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json_logs=True)
    try:
        structlog.get_logger("t").info("login", password="hunter2hunter2", user_id="u1")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["password"] == REDACTED
        assert record["user_id"] == "u1"
        assert record["event"] == "login"
        assert record["timestamp"].endswith("Z")
    finally:
        configure_logging("INFO", json_logs=True)
