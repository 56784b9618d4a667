"""Per-address budgets count a client: an IPv6 /64, an IPv4 address however written."""

from __future__ import annotations

import pytest

from domain.rate_limit_keys import client_address_key


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::a", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::a", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        # IPv4-mapped, as a dual-stack socket reports an IPv4 peer: the IPv4 client.
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:cb00:7107", "203.0.113.7"),
        # No address to group by: its own key; none at all: one shared budget.
        ("testclient", "testclient"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_the_budget_key_of_a_client_address(ip: str | None, key: str) -> None:
    assert client_address_key(ip) == key


def test_addresses_of_one_ipv6_64_share_a_key_and_its_neighbour_does_not() -> None:
    rotated = {client_address_key(f"2001:db8:aa:bb::{n:x}") for n in range(1, 200)}
    assert rotated == {"2001:db8:aa:bb::/64"}
    assert client_address_key("2001:db8:aa:bc::1") != client_address_key("2001:db8:aa:bb::1")
    # IPv4 is untouched: neighbours are different clients.
    assert client_address_key("198.51.100.1") != client_address_key("198.51.100.2")
