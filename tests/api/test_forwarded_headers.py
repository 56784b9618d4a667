"""X-Forwarded-For counts only from the proxies FOUNDRY_FORWARDED_ALLOW_IPS names.

Observed through the per-IP login budget over real HTTP: a server that trusts no proxy
puts every forged address in one budget (the peer's); one that trusts 127.0.0.1 gives
each forwarded address its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import ValidationError

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.conftest import ServerThread
from tests.helpers import LOG_IN, GraphQLClient, unique_email


@contextmanager
def _running(settings: Settings, urls: BackendUrls, trusted: str) -> Iterator[ServerThread]:
    server = ServerThread(
        settings.model_copy(
            update={
                "forwarded_allow_ips": trusted,
                "rate_limits": {"login_ip": "2/60"},
                "redis_key_prefix": f"{settings.redis_key_prefix}xff-{uuid.uuid4().hex[:6]}:",
            }
        ),
        urls,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def untrusting(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    with _running(settings, urls, "") as server:
        yield server


@pytest.fixture(scope="module")
def trusting(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    with _running(settings, urls, "10.0.0.0/8, 127.0.0.1") as server:
        yield server


async def _login_code(server: ServerThread, forwarded_for: str) -> str:
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=30, headers={"x-forwarded-for": forwarded_for}
    ) as http:
        body = await GraphQLClient(http).execute(
            LOG_IN, {"input": {"email": unique_email(), "password": "not the password"}}
        )
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, body
    return str(errors[0]["extensions"]["code"])


async def test_without_trusted_proxies_a_forged_address_changes_nothing(
    untrusting: ServerThread,
) -> None:
    seen = [await _login_code(untrusting, f"203.0.113.{n}") for n in range(3)]
    assert seen == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "RATE_LIMITED"]


async def test_a_trusted_proxy_gives_each_client_its_own_budget(trusting: ServerThread) -> None:
    first = [await _login_code(trusting, "203.0.113.7") for _ in range(3)]
    assert first == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "RATE_LIMITED"]
    # Another client behind the same proxy, and one behind two trusted hops.
    assert await _login_code(trusting, "203.0.113.8") == "INVALID_CREDENTIALS"
    assert await _login_code(trusting, "198.51.100.4, 10.1.2.3") == "INVALID_CREDENTIALS"
    # An address the client wrote itself, left of an untrusted hop, does not count.
    spoofed = [await _login_code(trusting, f"192.0.2.{n}, 203.0.113.7") for n in range(2)]
    assert spoofed == ["RATE_LIMITED", "RATE_LIMITED"]


async def test_an_ipv6_client_has_one_budget_for_its_whole_64(trusting: ServerThread) -> None:
    """A /64 is one client's: picking a new address from it buys no new budget."""
    first = [await _login_code(trusting, f"2001:db8:1:2::{n:x}") for n in range(1, 4)]
    assert first == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "RATE_LIMITED"]
    assert await _login_code(trusting, "2001:db8:1:2:ffff:ffff:ffff:ffff") == "RATE_LIMITED"
    assert await _login_code(trusting, "2001:db8:1:3::1") == "INVALID_CREDENTIALS"
    # An IPv4 client written IPv4-mapped (as a dual-stack proxy may) is that IPv4 client.
    assert await _login_code(trusting, "198.51.100.77") == "INVALID_CREDENTIALS"
    assert await _login_code(trusting, "::ffff:198.51.100.77") == "INVALID_CREDENTIALS"
    assert await _login_code(trusting, "198.51.100.77") == "RATE_LIMITED"


@pytest.fixture(scope="module")
def trusting_a_network_with_host_bits(
    settings: Settings, urls: BackendUrls
) -> Iterator[ServerThread]:
    """127.0.0.1/8 as an operator may write it (uvicorn alone would match nobody)."""
    with _running(settings, urls, "127.0.0.1/8") as server:
        yield server


async def test_a_proxy_network_written_with_host_bits_is_trusted(
    trusting_a_network_with_host_bits: ServerThread,
) -> None:
    server = trusting_a_network_with_host_bits
    first = [await _login_code(server, "203.0.113.7") for _ in range(3)]
    assert first == ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "RATE_LIMITED"]
    assert await _login_code(server, "203.0.113.8") == "INVALID_CREDENTIALS"


def test_a_malformed_proxy_list_fails_at_start_up() -> None:
    with pytest.raises(ValidationError, match="forwarded_allow_ips"):
        Settings(_env_file=None, forwarded_allow_ips="127.0.0.1, proxy.internal")
    # "*" would believe the leftmost X-Forwarded-For entry, which the client wrote.
    with pytest.raises(ValidationError, match="list the proxies' addresses or networks"):
        Settings(_env_file=None, forwarded_allow_ips=" * ")
