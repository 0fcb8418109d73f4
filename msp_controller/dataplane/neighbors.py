"""ARP and IPv6 neighbour discovery for the L3 ports the controller answers for.

Pure functions over packet bytes: decode what a neighbour sent, say what to learn and
what to answer. Malformed or irrelevant packets give NeighborEvent(ignored=reason).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ryu.lib.packet import arp, ether_types, ethernet, icmpv6, ipv6, packet

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address

IpAddress = IPv4Address | IPv6Address
IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

ND_ROUTER = 0b100  # R, S and O flags of a neighbour advertisement (Ryu's "res" field)
ND_SOLICITED = 0b010
ND_OVERRIDE = 0b001
BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class RouterInterface:
    """An L3 interface whose neighbour protocol the controller speaks."""

    mac: str
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface | None
    # Answer for every address of the subnet (the MSPMB routes host to host, so each host
    # must send everything to it), not just for our own address.
    proxy: bool = False
    # The IPv6 link-local address router advertisements come from (hosts' default router).
    link_local: IPv6Address | None = None


@dataclass(frozen=True)
class NeighborEvent:
    # (IP address, MAC) a neighbour on this port claims; the core decides whether to believe
    # it (claims.py: a known address moves only when its holder is gone).
    learned: tuple[str, str] | None = None
    reply: bytes | None = None  # frame to send back out of the port it came in on
    ignored: str | None = None
    own_claimed: tuple[str, str] | None = None  # (IP, MAC) claiming one of our own addresses: refused


def _answers_for(iface: RouterInterface, target: IPv4Address | IPv6Address, sender: str) -> bool:
    if iface.link_local is not None and target == iface.link_local:
        return True
    own = iface.ipv4 if target.version == 4 else iface.ipv6
    if own is None:
        return False
    if target == own.ip:
        return True
    return iface.proxy and target in own.network and str(target) != sender


def is_unicast_mac(mac: str) -> bool:
    """A MAC a neighbour may have: not broadcast, not multicast (group bit), not all zeros."""
    try:
        value = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        return False
    return len(value) == 6 and any(value) and not value[0] & 1


def _same_family(iface: RouterInterface, address: str) -> tuple[IpAddress, IpInterface] | None:
    """The address and the interface's own address of its family, if both exist."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    own = iface.ipv4 if ip.version == 4 else iface.ipv6
    return None if own is None else (ip, own)


def _is_own(iface: RouterInterface, address: str) -> bool:
    pair = _same_family(iface, address)
    return pair is not None and pair[0] == pair[1].ip


def _refused(iface: RouterInterface, eth: ethernet.ethernet, ip: str, mac: str) -> NeighborEvent | None:
    """A frame no neighbour may send (nothing learned, nothing answered): a source or claimed
    MAC that is not a unicast address, or a claim of one of the interface's own addresses."""
    for what, value in (("Ethernet source", eth.src), ("claimed MAC", mac)):
        if not is_unicast_mac(value):
            return NeighborEvent(ignored=f"{what} {value} is not a unicast address")
    if _is_own(iface, ip):
        return NeighborEvent(ignored=f"{mac} claims {ip}, an address of ours", own_claimed=(ip, mac))
    return None


def _learnable(iface: RouterInterface, address: str) -> bool:
    pair = _same_family(iface, address)
    if pair is None:
        return False
    ip, own = pair
    return ip in own.network and ip != own.ip and not ip.is_unspecified


def handle_frame(iface: RouterInterface, data: bytes) -> NeighborEvent:
    try:
        pkt = packet.Packet(data)
    except Exception as err:  # Ryu's decoder raises many types on garbage
        return NeighborEvent(ignored=f"undecodable frame: {err}")
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        return NeighborEvent(ignored="no Ethernet header")
    arp_pkt = pkt.get_protocol(arp.arp)
    if arp_pkt is not None:
        return _handle_arp(iface, eth, arp_pkt)
    icmp = pkt.get_protocol(icmpv6.icmpv6)
    ip6 = pkt.get_protocol(ipv6.ipv6)
    if icmp is not None and ip6 is not None:
        return _handle_nd(iface, eth, ip6, icmp)
    return NeighborEvent(ignored="not ARP or neighbour discovery")


def _handle_arp(iface: RouterInterface, eth: ethernet.ethernet, req: arp.arp) -> NeighborEvent:
    refused = _refused(iface, eth, req.src_ip, req.src_mac)
    if refused is not None:
        return refused
    learned = (req.src_ip, req.src_mac) if _learnable(iface, req.src_ip) else None
    if req.opcode != arp.ARP_REQUEST:
        return NeighborEvent(learned=learned)
    try:
        target = ipaddress.IPv4Address(req.dst_ip)
    except ValueError:
        return NeighborEvent(ignored=f"bad ARP target {req.dst_ip!r}")
    if not _answers_for(iface, target, req.src_ip):
        return NeighborEvent(learned=learned)
    reply = packet.Packet()
    reply.add_protocol(ethernet.ethernet(dst=eth.src, src=iface.mac, ethertype=ether_types.ETH_TYPE_ARP))
    reply.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=iface.mac, src_ip=str(target),
                               dst_mac=req.src_mac, dst_ip=req.src_ip))
    reply.serialize()
    return NeighborEvent(learned=learned, reply=bytes(reply.data))


def _link_layer_option(message: icmpv6.nd_neighbor) -> str | None:
    option = message.option
    return getattr(option, "hw_src", None) if option is not None else None


def _handle_nd(iface: RouterInterface, eth: ethernet.ethernet, ip6: ipv6.ipv6,
               icmp: icmpv6.icmpv6) -> NeighborEvent:
    message = icmp.data
    if not isinstance(message, icmpv6.nd_neighbor):
        return NeighborEvent(ignored=f"ICMPv6 type {icmp.type_} is not neighbour discovery")
    if ip6.hop_limit != 255:
        return NeighborEvent(ignored="neighbour discovery with hop limit below 255 (RFC 4861)")
    if icmp.type_ == icmpv6.ND_NEIGHBOR_ADVERT:
        refused = _refused(iface, eth, message.dst, eth.src)
        if refused is not None:
            return refused
        learned = (message.dst, eth.src) if _learnable(iface, message.dst) else None
        return NeighborEvent(learned=learned)
    if icmp.type_ != icmpv6.ND_NEIGHBOR_SOLICIT:
        return NeighborEvent(ignored=f"ICMPv6 type {icmp.type_}")
    source_mac = _link_layer_option(message) or eth.src
    refused = _refused(iface, eth, ip6.src, source_mac)
    if refused is not None:
        return refused
    learned = (ip6.src, source_mac) if _learnable(iface, ip6.src) else None
    target = ipaddress.IPv6Address(message.dst)
    if ipaddress.IPv6Address(ip6.src).is_unspecified or not _answers_for(iface, target, ip6.src):
        return NeighborEvent(learned=learned)  # duplicate address detection, or not ours
    return NeighborEvent(learned=learned, reply=neighbor_advertisement(iface, target, ip6.src, source_mac))


def neighbor_advertisement(iface: RouterInterface, target: IPv6Address, dst_ip: str, dst_mac: str) -> bytes:
    reply = packet.Packet()
    reply.add_protocol(ethernet.ethernet(dst=dst_mac, src=iface.mac, ethertype=ether_types.ETH_TYPE_IPV6))
    reply.add_protocol(ipv6.ipv6(src=str(target), dst=dst_ip, nxt=58, hop_limit=255))
    reply.add_protocol(icmpv6.icmpv6(type_=icmpv6.ND_NEIGHBOR_ADVERT, data=icmpv6.nd_neighbor(
        res=ND_ROUTER | ND_SOLICITED | ND_OVERRIDE, dst=str(target),
        option=icmpv6.nd_option_tla(hw_src=iface.mac))))
    reply.serialize()
    return bytes(reply.data)


def arp_request(iface: RouterInterface, target: IPv4Address) -> bytes:
    request = packet.Packet()
    request.add_protocol(ethernet.ethernet(dst=BROADCAST, src=iface.mac, ethertype=ether_types.ETH_TYPE_ARP))
    request.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=iface.mac, src_ip=str(iface.ipv4.ip),
                                 dst_mac="00:00:00:00:00:00", dst_ip=str(target)))
    request.serialize()
    return bytes(request.data)


def neighbor_solicitation(iface: RouterInterface, target: IPv6Address) -> bytes:
    assert iface.ipv6 is not None
    group = ipaddress.IPv6Address("ff02::1:ff00:0") + (int(target) & 0xFFFFFF)
    group_mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[-4:])
    request = packet.Packet()
    request.add_protocol(ethernet.ethernet(dst=group_mac, src=iface.mac, ethertype=ether_types.ETH_TYPE_IPV6))
    request.add_protocol(ipv6.ipv6(src=str(iface.ipv6.ip), dst=str(group), nxt=58, hop_limit=255))
    request.add_protocol(icmpv6.icmpv6(type_=icmpv6.ND_NEIGHBOR_SOLICIT, data=icmpv6.nd_neighbor(
        dst=str(target), option=icmpv6.nd_option_sla(hw_src=iface.mac))))
    request.serialize()
    return bytes(request.data)


def solicit(iface: RouterInterface, target: str) -> bytes | None:
    """ARP request or neighbour solicitation for a target, if it is on this interface."""
    ip = ipaddress.ip_address(target)
    if ip.version == 4:
        return arp_request(iface, ip) if ip in iface.ipv4.network else None  # type: ignore[arg-type]
    if iface.ipv6 is None or ip not in iface.ipv6.network:
        return None
    return neighbor_solicitation(iface, ip)  # type: ignore[arg-type]


def destination_of(data: bytes) -> str | None:
    """The IP destination of a routed packet that missed the neighbour table."""
    try:
        pkt = packet.Packet(data)
    except Exception:
        return None
    for proto in pkt.protocols:
        dst = getattr(proto, "dst", None)
        if type(proto).__name__ in ("ipv4", "ipv6"):
            return str(dst)
    return None
