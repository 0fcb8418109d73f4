"""ARP and neighbour discovery, decoded and answered from real frames."""
from __future__ import annotations

import ipaddress

from ryu.lib.packet import arp, ethernet, icmpv6, ipv6, packet

from msp_controller.dataplane.neighbors import (
    RouterInterface,
    arp_request,
    destination_of,
    handle_frame,
    neighbor_solicitation,
)

GW_MAC, HOST_MAC = "06:00:00:00:01:01", "00:00:00:00:00:10"
LAN = RouterInterface(GW_MAC, ipaddress.IPv4Interface("198.51.100.1/24"),
                      ipaddress.IPv6Interface("2001:db8:100::1/64"), proxy=True)
UPSTREAM = RouterInterface(GW_MAC, ipaddress.IPv4Interface("198.18.20.2/24"),
                           ipaddress.IPv6Interface("2001:db8:ff20::2/64"))


def _arp(opcode: int, src_ip: str, dst_ip: str, src_mac: str = HOST_MAC) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=opcode, src_mac=src_mac, src_ip=src_ip, dst_mac="00:00:00:00:00:00", dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def _ns(src: str, target: str, hop_limit: int = 255) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="33:33:ff:00:00:01", src=HOST_MAC, ethertype=0x86DD))
    pkt.add_protocol(ipv6.ipv6(src=src, dst="ff02::1:ff00:1", nxt=58, hop_limit=hop_limit))
    option = None if src == "::" else icmpv6.nd_option_sla(hw_src=HOST_MAC)
    pkt.add_protocol(icmpv6.icmpv6(type_=135, data=icmpv6.nd_neighbor(dst=target, option=option)))
    pkt.serialize()
    return bytes(pkt.data)


def test_arp_for_gateway_is_answered_and_host_learned():
    event = handle_frame(LAN, _arp(arp.ARP_REQUEST, "198.51.100.10", "198.51.100.1"))
    assert event.learned == ("198.51.100.10", HOST_MAC)
    reply = packet.Packet(event.reply)
    answer = reply.get_protocol(arp.arp)
    assert answer.opcode == arp.ARP_REPLY and answer.src_mac == GW_MAC and answer.src_ip == "198.51.100.1"
    assert reply.get_protocol(ethernet.ethernet).dst == HOST_MAC


def test_lan_proxies_for_other_hosts_but_not_for_the_sender():
    assert handle_frame(LAN, _arp(arp.ARP_REQUEST, "198.51.100.10", "198.51.100.20")).reply is not None
    gratuitous = handle_frame(LAN, _arp(arp.ARP_REQUEST, "198.51.100.10", "198.51.100.10"))
    assert gratuitous.reply is None and gratuitous.learned == ("198.51.100.10", HOST_MAC)


def test_upstream_answers_only_for_its_own_address():
    assert handle_frame(UPSTREAM, _arp(arp.ARP_REQUEST, "198.18.20.1", "198.18.20.2")).reply is not None
    assert handle_frame(UPSTREAM, _arp(arp.ARP_REQUEST, "198.18.20.1", "198.18.20.9")).reply is None


def test_off_subnet_sender_is_not_learned():
    event = handle_frame(LAN, _arp(arp.ARP_REQUEST, "192.0.2.66", "198.51.100.1"))
    assert event.learned is None


def test_neighbor_solicitation_for_gateway_is_answered():
    event = handle_frame(LAN, _ns("2001:db8:100::10", "2001:db8:100::1"))
    assert event.learned == ("2001:db8:100::10", HOST_MAC)
    reply = packet.Packet(event.reply)
    advert = reply.get_protocol(icmpv6.icmpv6)
    assert advert.type_ == icmpv6.ND_NEIGHBOR_ADVERT and advert.data.dst == "2001:db8:100::1"
    assert advert.data.option.hw_src == GW_MAC
    assert reply.get_protocol(ipv6.ipv6).hop_limit == 255


def test_duplicate_address_detection_and_bad_hop_limit_are_not_answered():
    assert handle_frame(LAN, _ns("::", "2001:db8:100::1")).reply is None
    assert handle_frame(LAN, _ns("2001:db8:100::10", "2001:db8:100::1", hop_limit=64)).ignored


def test_garbage_is_ignored_with_a_reason():
    for frame in (b"", b"\x00" * 7, b"\xff" * 60):
        assert handle_frame(LAN, frame).ignored


def test_solicitations_we_send_are_well_formed():
    request = packet.Packet(arp_request(UPSTREAM, ipaddress.IPv4Address("198.18.20.1"))).get_protocol(arp.arp)
    assert request.dst_ip == "198.18.20.1" and request.src_ip == "198.18.20.2"
    ns = packet.Packet(neighbor_solicitation(UPSTREAM, ipaddress.IPv6Address("2001:db8:ff20::1")))
    assert ns.get_protocol(ipv6.ipv6).dst == "ff02::1:ff00:1"
    assert ns.get_protocol(ethernet.ethernet).dst == "33:33:ff:00:00:01"
    # The solicitation answered by another router interface gives a reply addressed to us.
    answer = handle_frame(RouterInterface("0a:00:00:00:00:01", ipaddress.IPv4Interface("198.18.20.1/24"),
                                          ipaddress.IPv6Interface("2001:db8:ff20::1/64")), ns.data)
    assert packet.Packet(answer.reply).get_protocol(ethernet.ethernet).dst == GW_MAC


def test_destination_of_routed_packet():
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(ethertype=0x86DD))
    pkt.add_protocol(ipv6.ipv6(src="2001:db8:200::10", dst="2001:db8:100::10", nxt=59))
    pkt.serialize()
    assert destination_of(bytes(pkt.data)) == "2001:db8:100::10"
    assert destination_of(b"\x01") is None
