"""IPv6 router discovery (RFC 4861) as the MSPMB's gateway speaks it: a strict check of Router
Solicitations, and Router Advertisements with prefix information (SLAAC, RFC 4862), MTU and
RDNSS (RFC 8106) options. Pure functions over bytes; nothing here raises on bad input.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from msp_controller.dataplane.checksum import internet_checksum

IPv6Address = ipaddress.IPv6Address

ICMPV6, ROUTER_SOLICIT, ROUTER_ADVERT = 58, 133, 134
OPT_SOURCE_LL, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 3, 5, 25
ALL_NODES = IPv6Address("ff02::1")
ALL_NODES_MAC = "33:33:00:00:00:01"
ALL_ROUTERS = IPv6Address("ff02::2")
FLAG_ON_LINK, FLAG_AUTONOMOUS = 0x80, 0x40
CUR_HOP_LIMIT = 64
VALID_LIFETIME_S = 86400  # of the prefix: addresses outlive a controller outage of a day
PREFERRED_LIFETIME_S = 14400


@dataclass(frozen=True)
class RouterSolicitation:
    source: IPv6Address  # :: before the host has an address
    source_mac: str


@dataclass(frozen=True)
class RsIgnored:
    reason: str


@dataclass(frozen=True)
class Advertisement:
    """What the gateway advertises on one LAN."""

    mac: str
    prefix: ipaddress.IPv6Network | None  # the /64 hosts form addresses in (None: no SLAAC)
    mtu: int
    dns: tuple[IPv6Address, ...]
    router_lifetime_s: int  # how long hosts keep the gateway as their default router

    @property
    def link_local(self) -> IPv6Address:
        return link_local(self.mac)


def link_local(mac: str) -> IPv6Address:
    """The gateway's link-local address (modified EUI-64 of its MAC): RAs come from it, and
    hosts' default routes point to it."""
    raw = bytearray(bytes.fromhex(mac.replace(":", "")))
    raw[0] ^= 0x02
    return IPv6Address(b"\xfe\x80" + bytes(6) + bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:]))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _pseudo(source: bytes, destination: bytes, length: int) -> bytes:
    return source + destination + struct.pack("!I3xB", length, ICMPV6)


def is_router_solicitation(data: bytes) -> bool:
    """A cheap look: untagged IPv6, next header ICMPv6, type 133."""
    return len(data) > 54 and data[12:14] == b"\x86\xdd" and data[20] == ICMPV6 and data[54] == ROUTER_SOLICIT


def parse_solicitation(data: bytes) -> RouterSolicitation | RsIgnored:
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError) as err:
        return RsIgnored(f"malformed: {err}")


def _parse(data: bytes) -> RouterSolicitation | RsIgnored:
    if len(data) < 14 + 40 + 8 or data[12:14] != b"\x86\xdd":
        return RsIgnored("not untagged IPv6, or too short")
    ip = data[14:]
    if ip[0] >> 4 != 6:
        return RsIgnored("not an IPv6 header")
    length, next_header, hop_limit = struct.unpack("!HBB", ip[4:8])
    if next_header != ICMPV6:
        return RsIgnored(f"next header {next_header} is not ICMPv6")
    if hop_limit != 255:
        return RsIgnored(f"hop limit {hop_limit}, not 255 (RFC 4861 6.1.1)")
    if length < 8 or 40 + length > len(ip):
        return RsIgnored(f"bad payload length {length}")
    source, destination = ip[8:24], ip[24:40]
    icmp = ip[40:40 + length]
    if icmp[0] != ROUTER_SOLICIT or icmp[1] != 0:
        return RsIgnored(f"ICMPv6 type {icmp[0]} code {icmp[1]} is not a router solicitation")
    if internet_checksum(_pseudo(source, destination, length) + icmp) != 0:
        return RsIgnored("bad ICMPv6 checksum")
    source_mac = _mac_text(data[6:12])
    if data[6] & 1:
        return RsIgnored(f"Ethernet source {source_mac} is not unicast")
    index = 8
    while index < len(icmp):
        if index + 2 > len(icmp) or icmp[index + 1] == 0 or index + 8 * icmp[index + 1] > len(icmp):
            return RsIgnored("bad option length")
        if icmp[index] == OPT_SOURCE_LL and not any(source):
            return RsIgnored("source link-layer option from the unspecified address (RFC 4861 6.1.1)")
        index += 8 * icmp[index + 1]
    return RouterSolicitation(IPv6Address(source), source_mac)


def build_advertisement(ad: Advertisement, dst_mac: str = ALL_NODES_MAC,
                        destination: IPv6Address = ALL_NODES) -> bytes:
    """A router advertisement from the gateway's link-local address."""
    options = _option(OPT_SOURCE_LL, bytes.fromhex(ad.mac.replace(":", "")))
    options += _option(OPT_MTU, struct.pack("!HI", 0, ad.mtu))
    if ad.prefix is not None:
        options += _option(OPT_PREFIX, struct.pack("!BBIII", ad.prefix.prefixlen, FLAG_ON_LINK | FLAG_AUTONOMOUS,
                                                   VALID_LIFETIME_S, PREFERRED_LIFETIME_S, 0)
                           + ad.prefix.network_address.packed)
    if ad.dns:
        # RFC 8106: lifetime at least the advertisement interval; the router lifetime is 3 times it.
        options += _option(OPT_RDNSS, struct.pack("!HI", 0, ad.router_lifetime_s)
                           + b"".join(a.packed for a in ad.dns))
    icmp = struct.pack("!BBHBBHII", ROUTER_ADVERT, 0, 0, CUR_HOP_LIMIT, 0, ad.router_lifetime_s, 0, 0) + options
    source = ad.link_local.packed
    checksum = internet_checksum(_pseudo(source, destination.packed, len(icmp)) + icmp)
    icmp = icmp[:2] + struct.pack("!H", checksum) + icmp[4:]
    header = struct.pack("!IHBB", 0x60000000, len(icmp), ICMPV6, 255) + source + destination.packed
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(ad.mac.replace(":", "")) + b"\x86\xdd"
    return eth + header + icmp


def _option(kind: int, body: bytes) -> bytes:
    """An ND option: type, length in units of 8 octets, body padded to fit."""
    size = (2 + len(body) + 7) // 8 * 8
    return bytes([kind, size // 8]) + body.ljust(size - 2, b"\0")
