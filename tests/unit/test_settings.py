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


def test_chunks_longer_than_the_local_models_window_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most 254 with the local embedder"):
        Settings(_env_file=None, chunk_size_tokens=512)
    assert Settings(_env_file=None, chunk_size_tokens=254).chunk_size_tokens == 254
    assert Settings(_env_file=None, embedder="gemini", chunk_size_tokens=512).embedder == "gemini"


def test_vectors_larger_than_the_hnsw_index_takes_are_refused() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 2000"):
        Settings(_env_file=None, embedding_dimensions=3_072)
    assert Settings(_env_file=None, embedding_dimensions=1_536).embedding_dimensions == 1_536
