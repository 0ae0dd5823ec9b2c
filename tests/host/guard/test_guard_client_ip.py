"""client_ip: the socket peer, or the first untrusted hop of X-Forwarded-For behind our proxies."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from starlette.types import Scope

from digitalme.host.guard.client_ip import UNKNOWN, client_ip, is_trusted, parse_trusted

PROXIES = parse_trusted(["10.0.0.0/8", "192.168.1.1", "fd00::/8"])


def scope_from(peer: str | None, *forwarded: str) -> Scope:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {
        "type": "http",
        "client": None if peer is None else (peer, 5000),
        "headers": [(b"host", b"example.test"), *headers],
    }


def test_without_trusted_proxies_the_peer_is_the_client_and_the_header_is_ignored() -> None:
    assert client_ip(scope_from("203.0.113.7", "1.1.1.1"), ()) == "203.0.113.7"


@pytest.mark.parametrize(
    "scope", [{"type": "http", "headers": []}, scope_from(None), scope_from("")]
)
def test_an_unreported_peer_is_unknown(scope: Scope) -> None:
    assert client_ip(scope, PROXIES) == UNKNOWN
    assert client_ip(scope, ()) == UNKNOWN


def test_an_untrusted_peer_cannot_choose_its_address_with_the_header() -> None:
    assert client_ip(scope_from("203.0.113.7", "1.1.1.1"), PROXIES) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client() -> None:
    scope = scope_from("10.0.0.5", "6.6.6.6, 198.51.100.4, 10.1.2.3")
    assert client_ip(scope, PROXIES) == "198.51.100.4"


def test_a_forged_leftmost_entry_is_ignored() -> None:
    # The attacker sent "X-Forwarded-For: 127.0.0.1"; our proxy appended its real address.
    scope = scope_from("10.0.0.5", "127.0.0.1, 203.0.113.9")
    assert client_ip(scope, PROXIES) == "203.0.113.9"


def test_repeated_headers_are_one_list_in_order() -> None:
    scope = scope_from("10.0.0.5", "6.6.6.6", "203.0.113.9, 10.0.0.1")
    assert client_ip(scope, PROXIES) == "203.0.113.9"


@pytest.mark.parametrize(
    "header",
    [
        "203.0.113.9, not-an-ip",
        "203.0.113.9, , ",
        "203.0.113.9,999.1.1.1",
        "203.0.113.9, [::1",
        "203.0.113.9, " + "1" * 500,
        "203.0.113.9, \x00\xff",
    ],
)
def test_malformed_entries_are_skipped(header: str) -> None:
    assert client_ip(scope_from("10.0.0.5", header), PROXIES) == "203.0.113.9"


def test_when_every_hop_is_trusted_the_leftmost_trusted_one_is_the_origin() -> None:
    assert client_ip(scope_from("10.0.0.5", "192.168.1.1, 10.9.9.9"), PROXIES) == "192.168.1.1"
    assert client_ip(scope_from("10.0.0.5"), PROXIES) == "10.0.0.5"
    assert client_ip(scope_from("10.0.0.5", "garbage"), PROXIES) == "10.0.0.5"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("203.0.113.9:4711", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("  203.0.113.9  ", "203.0.113.9"),
    ],
)
def test_ports_brackets_and_mapped_addresses_are_understood(entry: str, expected: str) -> None:
    assert client_ip(scope_from("10.0.0.5", entry), PROXIES) == expected


def test_ipv6_proxies_and_mapped_peers_are_trusted() -> None:
    assert client_ip(scope_from("fd00::1", "203.0.113.9"), PROXIES) == "203.0.113.9"
    assert client_ip(scope_from("::ffff:10.0.0.5", "203.0.113.9"), PROXIES) == "203.0.113.9"


def test_a_peer_that_is_not_an_address_is_reported_as_is() -> None:
    assert client_ip(scope_from("testclient", "203.0.113.9"), PROXIES) == "testclient"


def test_an_ipv4_address_is_not_inside_an_ipv6_network() -> None:
    # ipaddress compares bare integers, which would put every IPv4 address in ::/0.
    assert not is_trusted(ip_address("1.2.3.4"), parse_trusted(["::/0"]))
    assert is_trusted(ip_address("1.2.3.4"), parse_trusted(["0.0.0.0/0"]))


def test_trusted_entries_may_carry_host_bits() -> None:
    assert parse_trusted(["10.1.2.3/8"]) == parse_trusted(["10.0.0.0/8"])
