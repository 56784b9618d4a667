"""Settings that only make sense together are refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infrastructure.settings import Settings


def test_a_heartbeat_timeout_shorter_than_three_heartbeats_is_refused() -> None:
    with pytest.raises(ValidationError, match="three heartbeat intervals"):
        Settings(_env_file=None, ingest_heartbeat_seconds=10, ingest_heartbeat_timeout_seconds=25)
    accepted = Settings(
        _env_file=None, ingest_heartbeat_seconds=10, ingest_heartbeat_timeout_seconds=30
    )
    assert accepted.ingest_heartbeat_timeout_seconds == 30
