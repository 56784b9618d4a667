"""Settings that only make sense together are refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from uvicorn.middleware.proxy_headers import _TrustedHosts

from infrastructure.http.server_config import trusted_proxies
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
    gemini = Settings(_env_file=None, embedder="gemini", embedding_dimensions=1_536)
    assert gemini.embedding_dimensions == 1_536


def test_a_wildcard_proxy_list_is_refused_with_what_to_write_instead() -> None:
    """With "*", uvicorn believes the leftmost X-Forwarded-For entry, which the client
    wrote: every client would choose its own rate-limit and audit address."""
    for value in ("*", " * ", "10.0.0.0/8, *"):
        with pytest.raises(ValidationError, match="list the proxies' addresses or networks"):
            Settings(_env_file=None, forwarded_allow_ips=value)


def test_proxy_entries_are_stored_as_uvicorn_reads_them() -> None:
    """uvicorn reads a network strictly: written with host bits it would match nobody."""
    settings = Settings(
        _env_file=None, forwarded_allow_ips=" 172.18.0.1/16, 127.0.0.1/8 ,0:0::1, fd00::7/64,"
    )
    assert settings.forwarded_allow_ips == "172.18.0.0/16,127.0.0.0/8,::1,fd00::/64"
    assert Settings(_env_file=None, forwarded_allow_ips=" ").forwarded_allow_ips == ""


def test_uvicorn_trusts_every_proxy_of_a_network_written_with_host_bits() -> None:
    settings = Settings(_env_file=None, forwarded_allow_ips="172.18.0.1/16")
    trusted = _TrustedHosts(trusted_proxies(settings) or "")
    assert "172.18.5.9" in trusted and "172.19.0.1" not in trusted
    # Behind two trusted hops, the client is the nearest untrusted address.
    assert trusted.get_trusted_client_address("203.0.113.7, 172.18.0.1") == ("203.0.113.7", 0)


def test_uvicorn_is_never_handed_a_list_that_skipped_validation() -> None:
    """model_copy(update=...) skips validators: the server configuration checks again."""
    valid = Settings(_env_file=None)
    host_bits = valid.model_copy(update={"forwarded_allow_ips": "172.18.0.1/16"})
    assert trusted_proxies(host_bits) == "172.18.0.0/16"
    with pytest.raises(ValueError, match="list the proxies' addresses or networks"):
        trusted_proxies(valid.model_copy(update={"forwarded_allow_ips": "*"}))
    assert trusted_proxies(valid) is None


def test_a_search_maximum_below_the_schemas_default_limit_is_refused() -> None:
    """A client that sends no limit gets 8 (the schema's default): a lower maximum would
    refuse it with VALIDATION_FAILED for a limit it never sent."""
    with pytest.raises(ValidationError, match="greater than or equal to 8"):
        Settings(_env_file=None, search_max_limit=5)
    assert Settings(_env_file=None, search_max_limit=8).search_max_limit == 8


def test_a_redis_key_prefix_with_glob_characters_is_refused() -> None:
    """Document events are subscribed to by pattern: a prefix such as "kf[prod]:" would
    match none of the channels they are published on, silently."""
    for prefix in ("kf[prod]:", "kf*:", "kf?:", "kf\\:"):
        with pytest.raises(ValidationError, match="redis_key_prefix"):
            Settings(_env_file=None, redis_key_prefix=prefix)
    assert Settings(_env_file=None, redis_key_prefix="kf-prod.2:").redis_key_prefix == "kf-prod.2:"


def test_files_larger_than_graphqls_int_are_refused() -> None:
    """Document.sizeBytes is an Int: a larger file would fail every listing it is in."""
    with pytest.raises(ValidationError, match="upload_max_file_bytes"):
        Settings(_env_file=None, upload_max_file_bytes=2**31)
    assert Settings(_env_file=None, upload_max_file_bytes=2**31 - 1).upload_max_file_bytes


def test_cors_origins_must_be_origins_and_are_read_as_browsers_send_them() -> None:
    """Both HTTP's CORS and the WebSocket handshake check read this one list: something
    more than an origin would stop the server only once it had started (strawberry's
    check), and a trailing slash or capital would match one of the two and not the other."""
    for wrong in ("app.example.com", "https://app.example.com/app", "null"):
        with pytest.raises(ValidationError, match="Invalid origin"):
            Settings(_env_file=None, cors_allow_origins=wrong)
    read = Settings(_env_file=None, cors_allow_origins="https://App.example.com/, *")
    assert read.cors_allow_origins == ["https://app.example.com", "*"]
