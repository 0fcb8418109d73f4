"""DHCPv4 (RFC 2131/2132) as the MSPMB's gateway speaks it: a strict parser for what clients
send, and a builder for the server's answers. Pure functions over bytes.

Only untagged Ethernet + IPv4 (no fragments) + UDP 68 -> 67 from a unicast client whose
Ethernet source is its chaddr is accepted; anything else is a DhcpIgnored naming why.
Nothing here raises on bad input.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from msp_controller.dataplane.checksum import internet_checksum

IPv4Address = ipaddress.IPv4Address

CLIENT_PORT, SERVER_PORT = 68, 67
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
BROADCAST_FLAG = 0x8000
BOOTP_FIXED = 236  # op .. file, before the magic cookie
ZERO = IPv4Address(0)
LIMITED_BROADCAST = IPv4Address("255.255.255.255")

# Message types (option 53).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
# Options (RFC 2132).
OPT_PAD, OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_MTU, OPT_BROADCAST = 0, 1, 3, 6, 26, 28
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_MESSAGE, OPT_RENEWAL_T1, OPT_REBINDING_T2, OPT_END = 56, 58, 59, 255


@dataclass(frozen=True)
class DhcpMessage:
    """What a client asked: only the fields the server acts on."""

    kind: int  # option 53
    xid: int
    flags: int
    ciaddr: IPv4Address
    chaddr: str  # "aa:bb:cc:dd:ee:ff", equal to the frame's Ethernet source
    requested: IPv4Address | None = None  # option 50
    server_id: IPv4Address | None = None  # option 54

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)


@dataclass(frozen=True)
class DhcpIgnored:
    reason: str


@dataclass(frozen=True)
class ServerIdentity:
    """The gateway as a DHCP server on one LAN."""

    mac: str
    address: IPv4Address
    subnet: ipaddress.IPv4Network


@dataclass(frozen=True)
class HostConfig:
    """What an OFFER/ACK hands a host besides its address."""

    lease_s: int
    mtu: int
    routers: tuple[IPv4Address, ...]
    dns: tuple[IPv4Address, ...] = field(default_factory=tuple)


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def is_dhcp_request(data: bytes) -> bool:
    """A cheap look: untagged IPv4, UDP, to port 67 (then parse_request says more)."""
    if len(data) < 14 + 20 + 8 or data[12:14] != b"\x08\x00" or data[23] != 17:
        return False
    ihl = (data[14] & 0x0F) * 4
    offset = 14 + ihl
    return len(data) >= offset + 4 and data[offset + 2:offset + 4] == struct.pack("!H", SERVER_PORT)


def parse_request(data: bytes) -> DhcpMessage | DhcpIgnored:
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError) as err:  # a bound check we missed: still no raise
        return DhcpIgnored(f"malformed: {err}")


def _parse(data: bytes) -> DhcpMessage | DhcpIgnored:
    if len(data) < 14 or data[12:14] != b"\x08\x00":
        return DhcpIgnored("not untagged IPv4")
    eth_src = data[6:12]
    ip = data[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return DhcpIgnored("not an IPv4 header")
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ihl < 20 or total < ihl + 8 or total > len(ip):
        return DhcpIgnored(f"bad IPv4 lengths (header {ihl}, total {total}, frame {len(ip)})")
    if struct.unpack("!H", ip[6:8])[0] & 0x3FFF:
        return DhcpIgnored("IPv4 fragment")
    if ip[9] != 17:
        return DhcpIgnored("not UDP")
    udp = ip[ihl:total]
    src_port, dst_port, udp_length = struct.unpack("!HHH", udp[:6])
    if (src_port, dst_port) != (CLIENT_PORT, SERVER_PORT):
        return DhcpIgnored(f"UDP {src_port} -> {dst_port} is not client to server")
    if udp_length < 8 or udp_length > len(udp):
        return DhcpIgnored(f"bad UDP length {udp_length}")
    bootp = udp[8:udp_length]
    if len(bootp) < BOOTP_FIXED + 4:
        return DhcpIgnored(f"BOOTP message of {len(bootp)} bytes is too short")
    op, htype, hlen, _hops, xid, _secs, flags = struct.unpack("!BBBBIHH", bootp[:12])
    if op != BOOTREQUEST or htype != HTYPE_ETHERNET or hlen != 6:
        return DhcpIgnored(f"not an Ethernet BOOTREQUEST (op {op}, htype {htype}, hlen {hlen})")
    chaddr = bootp[28:34]
    if chaddr != eth_src:
        return DhcpIgnored(f"chaddr {_mac_text(chaddr)} is not the sender {_mac_text(eth_src)}")
    if chaddr[0] & 1 or not any(chaddr):
        return DhcpIgnored(f"chaddr {_mac_text(chaddr)} is not a unicast address")
    if bootp[BOOTP_FIXED:BOOTP_FIXED + 4] != MAGIC_COOKIE:
        return DhcpIgnored("no DHCP magic cookie")
    options = _options(bootp[BOOTP_FIXED + 4:])
    if isinstance(options, DhcpIgnored):
        return options
    kind = options.get(OPT_MESSAGE_TYPE)
    if kind is None or len(kind) != 1:
        return DhcpIgnored("no message type (option 53)")
    fields: dict[str, IPv4Address | None] = {}
    for code, name in ((OPT_REQUESTED_IP, "requested"), (OPT_SERVER_ID, "server_id")):
        value = options.get(code)
        if value is not None and len(value) != 4:
            return DhcpIgnored(f"option {code} has {len(value)} bytes, not 4")
        fields[name] = IPv4Address(value) if value is not None else None
    return DhcpMessage(kind=kind[0], xid=xid, flags=flags, ciaddr=IPv4Address(bootp[12:16]),
                       chaddr=_mac_text(chaddr), **fields)


def _options(raw: bytes) -> dict[int, bytes] | DhcpIgnored:
    """Options up to END; a repeated option is concatenated (RFC 3396). Overload (52) is not
    supported: the fields it borrows are never needed for what we answer."""
    options: dict[int, bytes] = {}
    index = 0
    while index < len(raw):
        code = raw[index]
        if code == OPT_PAD:
            index += 1
            continue
        if code == OPT_END:
            return options
        if index + 2 > len(raw):
            return DhcpIgnored(f"option {code} has no length")
        length = raw[index + 1]
        value = raw[index + 2:index + 2 + length]
        if len(value) != length:
            return DhcpIgnored(f"option {code} runs past the message")
        options[code] = options.get(code, b"") + value
        index += 2 + length
    return DhcpIgnored("options without END")


# --- answers --------------------------------------------------------------------------------


def _option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _addresses(addresses: tuple[IPv4Address, ...]) -> bytes:
    return b"".join(a.packed for a in addresses)


def build_reply(server: ServerIdentity, request: DhcpMessage, kind: int, yiaddr: IPv4Address | None,
                config: HostConfig | None, message: str = "") -> bytes:
    """An OFFER, ACK (yiaddr and config given) or NAK, as an Ethernet frame to the client."""
    options = _option(OPT_MESSAGE_TYPE, bytes([kind])) + _option(OPT_SERVER_ID, server.address.packed)
    if kind in (OFFER, ACK) and config is not None:
        lease = config.lease_s
        options += _option(OPT_LEASE_TIME, struct.pack("!I", lease))
        options += _option(OPT_RENEWAL_T1, struct.pack("!I", lease // 2))
        options += _option(OPT_REBINDING_T2, struct.pack("!I", lease * 7 // 8))
        options += _option(OPT_SUBNET_MASK, server.subnet.netmask.packed)
        options += _option(OPT_BROADCAST, server.subnet.broadcast_address.packed)
        if config.routers:
            options += _option(OPT_ROUTER, _addresses(config.routers))
        if config.dns:
            options += _option(OPT_DNS, _addresses(config.dns))
        options += _option(OPT_MTU, struct.pack("!H", config.mtu))
    if message:
        options += _option(OPT_MESSAGE, message.encode("ascii", "replace")[:255])
    options += bytes([OPT_END])
    chaddr = bytes.fromhex(request.chaddr.replace(":", ""))
    # A renewing client (ciaddr set, no broadcast flag) is answered at its address; everything
    # else to the limited broadcast address, delivered to the client's MAC (this port only).
    unicast = kind != NAK and request.ciaddr != ZERO and not request.broadcast
    ip_dst = request.ciaddr if unicast else LIMITED_BROADCAST
    bootp = struct.pack("!BBBBIHH", BOOTREPLY, HTYPE_ETHERNET, 6, 0, request.xid, 0, request.flags)
    bootp += (request.ciaddr if kind == ACK else ZERO).packed + (yiaddr or ZERO).packed
    bootp += ZERO.packed + ZERO.packed  # siaddr (no boot server), giaddr (no relay)
    bootp += chaddr.ljust(16, b"\0") + bytes(64 + 128) + MAGIC_COOKIE + options
    bootp = bootp.ljust(300 - 8, b"\0")  # BOOTP's minimum; some clients want it
    udp_length = 8 + len(bootp)
    pseudo = server.address.packed + ip_dst.packed + struct.pack("!BBH", 0, 17, udp_length)
    udp = struct.pack("!HHHH", SERVER_PORT, CLIENT_PORT, udp_length, 0) + bootp
    udp_sum = internet_checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(udp), 0, 0, 64, 17, 0,
                         server.address.packed, ip_dst.packed)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    eth = chaddr + bytes.fromhex(server.mac.replace(":", "")) + b"\x08\x00"
    return eth + header + udp
