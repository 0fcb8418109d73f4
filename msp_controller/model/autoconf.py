"""A homenet's host autoconfiguration settings (DHCPv4 pool, router advertisements), validated.

The [homenets.autoconf] table of the config (or "autoconf" in a REST homenet body). Every
field has a default, so a homenet without the table still serves DHCP and SLAAC: the upper
half of its LAN subnet as the pool, a one-hour lease, the tunnel MTU, no DNS resolver.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from msp_controller.model.errors import FieldError

UNDERLAY_MTU = 1500
VXLAN_IPV4_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
DEFAULT_MTU = UNDERLAY_MTU - VXLAN_IPV4_OVERHEAD
DEFAULT_LEASE_S = 3600
DEFAULT_RA_INTERVAL_S = 600  # RFC 4861's MaxRtrAdvInterval default
MAX_POOL = 4096  # addresses; a free address is searched for in time that grows with the pool
MAX_DNS = 4

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address


@dataclass(frozen=True)
class Autoconf:
    enabled: bool
    pool_start: IPv4Address
    pool_end: IPv4Address
    lease_s: int
    mtu: int
    dns4: tuple[IPv4Address, ...]  # DHCP option 6
    dns6: tuple[IPv6Address, ...]  # RDNSS option of the router advertisements (RFC 8106; none without lan_ipv6)
    slaac: bool  # router advertisements with the LAN /64 as an autonomous prefix
    ra_interval_s: int  # unsolicited advertisements come every interval/3..interval

    @property
    def pool_size(self) -> int:
        return int(self.pool_end) - int(self.pool_start) + 1


def default_pool(lan: ipaddress.IPv4Interface) -> tuple[IPv4Address, IPv4Address]:
    """The upper half of the LAN subnet, without its broadcast address (static hosts keep the
    lower half); a subnet too small to halve gives all its host addresses."""
    network = lan.network
    if network.num_addresses >= 8:
        return network[network.num_addresses // 2], network[-2]
    return network[1], network[max(network.num_addresses - 2, 1)]


def parse_autoconf(raw: Any, where: str, lan_ipv4: ipaddress.IPv4Interface,
                   lan_ipv6: ipaddress.IPv6Interface | None) -> Autoconf:
    """Validate the table (None: every default). FieldError names the offending field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FieldError(where, f"must be a table, not {type(raw).__name__}")
    known = {"enabled", "pool_start", "pool_end", "lease_time_s", "mtu", "dns", "slaac", "ra_interval_s"}
    for key in raw:
        if key not in known:
            raise FieldError(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(known))})")

    def flag(key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise FieldError(f"{where}.{key}", f"must be true or false, not {value!r}")
        return value

    def integer(key: str, default: int, low: int, high: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"{where}.{key}", f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise FieldError(f"{where}.{key}", f"{value} is out of range {low}..{high}")
        return value

    start, end = default_pool(lan_ipv4)
    network = lan_ipv4.network
    for key in ("pool_start", "pool_end"):
        if key in raw:
            try:
                address = IPv4Address(raw[key])
            except (ValueError, TypeError) as err:
                raise FieldError(f"{where}.{key}", f"{raw[key]!r} is not an IPv4 address: {err}") from None
            if address not in network or address in (network.network_address, network.broadcast_address):
                raise FieldError(f"{where}.{key}", f"{address} is not a host address of the LAN {network}")
            if key == "pool_start":
                start = address
            else:
                end = address
    if start > end:
        raise FieldError(f"{where}.pool_end", f"{end} comes before pool_start {start}")
    if start <= lan_ipv4.ip <= end:
        raise FieldError(f"{where}.pool_start", f"the pool {start}-{end} holds the gateway {lan_ipv4.ip}")
    if int(end) - int(start) + 1 > MAX_POOL:
        raise FieldError(f"{where}.pool_end", f"the pool {start}-{end} has more than {MAX_POOL} addresses")

    dns = raw.get("dns", [])
    if not isinstance(dns, list) or len(dns) > 2 * MAX_DNS:
        raise FieldError(f"{where}.dns", f"must be a list of at most {2 * MAX_DNS} addresses")
    dns4: list[IPv4Address] = []
    dns6: list[IPv6Address] = []
    for index, text in enumerate(dns):
        try:
            resolver = ipaddress.ip_address(text)
        except (ValueError, TypeError) as err:
            raise FieldError(f"{where}.dns[{index}]", f"{text!r} is not an IP address: {err}") from None
        if resolver.is_multicast or resolver.is_unspecified or resolver.is_loopback:
            raise FieldError(f"{where}.dns[{index}]", f"{resolver} cannot be a resolver's address")
        if isinstance(resolver, IPv4Address):
            dns4.append(resolver)
        else:
            dns6.append(resolver)
    if len(dns4) > MAX_DNS or len(dns6) > MAX_DNS:
        raise FieldError(f"{where}.dns", f"at most {MAX_DNS} resolvers per family")

    can_slaac = lan_ipv6 is not None and lan_ipv6.network.prefixlen == 64
    slaac = flag("slaac", can_slaac)
    if slaac and not can_slaac:
        raise FieldError(f"{where}.slaac", "needs lan_ipv6 with a /64 (SLAAC forms addresses in a /64 only)")
    return Autoconf(
        enabled=flag("enabled", True),
        pool_start=start,
        pool_end=end,
        lease_s=integer("lease_time_s", DEFAULT_LEASE_S, 60, 7 * 86400),
        # IPv6 needs 1280 at least (RFC 8200); IPv4 hosts follow the same figure here.
        mtu=integer("mtu", DEFAULT_MTU, 1280, 9000),
        dns4=tuple(dns4),
        dns6=tuple(dns6),
        slaac=slaac,
        ra_interval_s=integer("ra_interval_s", DEFAULT_RA_INTERVAL_S, 4, 1800),  # RFC 4861's bounds
    )
