"""Whom a per-address budget (login_ip, signup_ip) counts: one client, not one address.

An IPv6 client is handed a whole /64 (RFC 6177 suggests at least that much for an end
site) and can pick a fresh address from it for every request, so keying by the full
address would give it an unlimited number of budgets. IPv6 addresses are therefore
counted by their /64 prefix; IPv4 addresses (also when written IPv4-mapped, as a
dual-stack socket reports them) by the address itself. Only the budget key changes:
the audit log keeps the full address.
"""

from __future__ import annotations

import ipaddress

IPV6_CLIENT_PREFIX = 64
UNKNOWN_CLIENT = "unknown"


def client_address_key(ip: str | None) -> str:
    """The rate-limit key of a client at ``ip``: ``203.0.113.7``, ``2001:db8:1:2::/64``.

    Something that is no IP address (a Unix socket's peer, a test client's name) is
    its own key; no address at all shares one ``unknown`` budget.
    """
    if not ip:
        return UNKNOWN_CLIENT
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    # From the integer: a zone index ("fe80::1%eth0") is no part of the network.
    host_bits = 128 - IPV6_CLIENT_PREFIX
    prefix = int(address) >> host_bits << host_bits
    return str(ipaddress.IPv6Network((prefix, IPV6_CLIENT_PREFIX)))
