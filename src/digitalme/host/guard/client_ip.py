"""The client's IP address, trusting ``X-Forwarded-For`` only from our own proxies.

The header is a comma-separated list that every proxy appends its peer to, so
only its right-hand end is trustworthy: each entry was written by the hop to its
right. Walking from the right and skipping our trusted proxies, the first address
that is not ours is the one a trusted proxy saw connecting to it: the client.
Everything further left was supplied by that client and is ignored, which is what
stops a caller from choosing its own rate-limit bucket by forging the header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.types import Scope

__all__ = ["UNKNOWN", "IPAddress", "IPNetwork", "client_ip", "is_trusted", "parse_trusted"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

UNKNOWN = "unknown"
"""What :func:`client_ip` returns when the server did not tell us the peer."""

_FORWARDED_FOR = b"x-forwarded-for"


def parse_trusted(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Turn ``SecuritySettings.trusted_proxies`` (IPs or CIDRs) into networks.

    Host bits are allowed (``10.0.0.1/8`` means ``10.0.0.0/8``), as the settings
    validator already accepts them.
    """
    return tuple(ip_network(item.strip(), strict=False) for item in items)


def is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    """Whether ``address`` lies in one of the ``trusted`` networks.

    The version check matters: ``ipaddress`` compares only the integer value, so an
    IPv4 address would otherwise count as a member of ``::/0``.
    """
    return any(address.version == network.version and address in network for network in trusted)


def _parse_address(text: str) -> IPAddress | None:
    """An address from a header entry or a peer, or None when it is not one.

    Accepts the ``1.2.3.4:5678`` and ``[2001:db8::1]:443`` forms that some proxies
    (Azure's front ends among them) write. IPv4-mapped IPv6 addresses become
    plain IPv4 so that a dual-stack listener and the trusted list agree on what an
    address is.
    """
    text = text.strip()
    if not text or len(text) > 64:  # no real address is longer; skip work on junk
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_entries(scope: Scope) -> list[str]:
    """All ``X-Forwarded-For`` entries, in order, across repeated headers."""
    entries: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == _FORWARDED_FOR:
            entries.extend(value.decode("latin-1").split(","))
    return entries


def client_ip(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The address of the client that sent this request, as a string.

    Without trusted proxies (the default) this is the socket peer, untouched, so
    the common case does no parsing at all. When the peer is a trusted proxy, the
    ``X-Forwarded-For`` chain is walked from the right: trusted and malformed
    entries are skipped and the first untrusted address wins. If every entry is
    trusted the request came from inside our own network, and the leftmost
    trusted address is the best description of where it started. A peer the
    server did not report gives :data:`UNKNOWN`.
    """
    client = scope.get("client")
    if not client or not client[0]:
        return UNKNOWN
    peer_text: str = client[0]
    if not trusted:
        return peer_text
    peer = _parse_address(peer_text)
    if peer is None or not is_trusted(peer, trusted):
        return peer_text
    leftmost_trusted = peer
    for entry in reversed(_forwarded_entries(scope)):
        address = _parse_address(entry)
        if address is None:
            continue
        if not is_trusted(address, trusted):
            return str(address)
        leftmost_trusted = address
    return str(leftmost_trusted)
