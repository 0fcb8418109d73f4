"""Host autoconfiguration at the MSPMB: DHCPv4 and router advertisements, end to end through
the fake flow table (the punt flows) and the core (the answers, read back with Ryu's own
packet library), leases across a warm restart, bounded against floods."""
from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ryu.lib.packet import dhcp as ryu_dhcp
from ryu.lib.packet import ethernet, icmpv6, ipv4, ipv6, packet, udp

from msp_controller.core import autoconf as core_autoconf
from msp_controller.core import leases as core_leases
from msp_controller.core.loading import load_core
from msp_controller.dataplane import dhcp, ofmsg, ra
from msp_controller.model.config import parse_config
from msp_controller.model.errors import FieldError
from msp_controller.store.sqlite import SqliteStore
from tests.harness import H1_MAC, HOME, Harness, arp_frame, nd_frame

ROOT = Path(__file__).resolve().parents[2]
HOST_MAC, OTHER_MAC = "02:00:00:00:aa:01", "02:00:00:00:aa:02"
GATEWAY4 = ipaddress.IPv4Address("198.51.100.1")


def _data(**autoconf: Any) -> dict[str, Any]:
    with open(ROOT / "etc" / "reference.toml", "rb") as handle:
        data = tomllib.load(handle)
    data["homenets"][0]["autoconf"] = {"dns": ["203.0.113.53", "2001:db8:200::53"], **autoconf}
    return data


def _net(**autoconf: Any) -> Harness:
    net = Harness(parse_config(_data(**autoconf)))
    net.connect_all()
    return net


# --- DHCP client frames ----------------------------------------------------------------------


def client_frame(kind: int, mac: str = HOST_MAC, xid: int = 0x1234, ciaddr: str = "0.0.0.0",
                 requested: str | None = None, server_id: str | None = None,
                 src: str = "0.0.0.0", dst: str = "255.255.255.255", eth_dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    raw_mac = bytes.fromhex(mac.replace(":", ""))
    options = bytes([53, 1, kind])
    if requested:
        options += bytes([50, 4]) + ipaddress.IPv4Address(requested).packed
    if server_id:
        options += bytes([54, 4]) + ipaddress.IPv4Address(server_id).packed
    options += bytes([55, 4, 1, 3, 6, 26, 255])
    bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0) + ipaddress.IPv4Address(ciaddr).packed
    bootp += bytes(12) + raw_mac.ljust(16, b"\0") + bytes(192) + dhcp.MAGIC_COOKIE + options
    datagram = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(datagram), 0, 0, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return bytes.fromhex(eth_dst.replace(":", "")) + raw_mac + b"\x08\x00" + header + datagram


def answer(net: Harness, frame: bytes, port: str = "mspmb-lan1") -> dict[str, Any] | None:
    """The controller's DHCP answer to a frame, read back with Ryu's parser (None: silence)."""
    outs = net.packet_in(HOME, port, frame)
    if not outs:
        return None
    assert len(outs) == 1 and outs[0].actions[0].port == net.ports[HOME][port]
    pkt = packet.Packet(bytes(outs[0].data))
    message = pkt.get_protocol(ryu_dhcp.dhcp)
    options = {o.tag: o.value for o in message.options.option_list}
    return {"kind": options[53][0], "yiaddr": message.yiaddr, "xid": message.xid, "options": options,
            "eth_dst": pkt.get_protocol(ethernet.ethernet).dst, "ip": pkt.get_protocol(ipv4.ipv4),
            "udp": pkt.get_protocol(udp.udp)}


def lease(net: Harness, mac: str = HOST_MAC, xid: int = 7) -> str:
    offer = answer(net, client_frame(dhcp.DISCOVER, mac, xid))
    assert offer is not None and offer["kind"] == dhcp.OFFER
    ack = answer(net, client_frame(dhcp.REQUEST, mac, xid, requested=offer["yiaddr"], server_id=str(GATEWAY4)))
    assert ack is not None and ack["kind"] == dhcp.ACK and ack["yiaddr"] == offer["yiaddr"]
    return ack["yiaddr"]


# --- DHCP ---------------------------------------------------------------------------------------


def test_dhcp_from_a_lan_port_goes_to_the_controller_through_its_own_flow():
    net = _net()
    discover = {"eth_type": 0x0800, "eth_src": HOST_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff", "ipv4_src": "0.0.0.0",
                "ipv4_dst": "255.255.255.255", "ip_proto": 17, "udp_src": 68, "udp_dst": 67}
    outputs = net.switch(HOME).process(1, discover)
    assert [o.port for o in outputs] == ["CONTROLLER"]
    # A renewal (unicast to the gateway from a leased address) too, not routed away.
    renewal = dict(discover, eth_dst=net.config.homenet("home1").gateway_mac, ipv4_src="198.51.100.130",
                   ipv4_dst=str(GATEWAY4))
    assert [o.port for o in net.switch(HOME).process(1, renewal)] == ["CONTROLLER"]


def test_discover_offer_request_ack_hands_out_address_gateway_dns_mtu_and_lease():
    net = _net(lease_time_s=1200)
    offer = answer(net, client_frame(dhcp.DISCOVER, xid=0xBEEF))
    assert offer["kind"] == dhcp.OFFER and offer["xid"] == 0xBEEF
    address = ipaddress.IPv4Address(offer["yiaddr"])
    assert ipaddress.IPv4Address("198.51.100.128") <= address <= ipaddress.IPv4Address("198.51.100.254")
    assert offer["eth_dst"] == HOST_MAC and offer["ip"].src == str(GATEWAY4)
    assert (offer["udp"].src_port, offer["udp"].dst_port) == (67, 68)
    ack = answer(net, client_frame(dhcp.REQUEST, xid=0xBEEF, requested=str(address), server_id=str(GATEWAY4)))
    options = ack["options"]
    assert ack["kind"] == dhcp.ACK and ack["yiaddr"] == str(address)
    assert options[dhcp.OPT_ROUTER] == GATEWAY4.packed
    assert options[dhcp.OPT_SUBNET_MASK] == ipaddress.IPv4Address("255.255.255.0").packed
    assert options[dhcp.OPT_DNS] == ipaddress.IPv4Address("203.0.113.53").packed
    assert struct.unpack("!H", options[dhcp.OPT_MTU])[0] == 1450  # 1500 underlay less VXLAN over IPv4
    assert struct.unpack("!I", options[dhcp.OPT_LEASE_TIME])[0] == 1200
    assert options[dhcp.OPT_SERVER_ID] == GATEWAY4.packed
    assert net.core.autoconf.books["home1"].lease_of(HOST_MAC).bound


def test_a_lease_is_reported_for_the_store_once_and_renewals_write_nothing():
    net = _net()
    offer = answer(net, client_frame(dhcp.DISCOVER))
    effects = net.core.packet_in(HOME, 1, 0, client_frame(dhcp.REQUEST, requested=offer["yiaddr"],
                                                          server_id=str(GATEWAY4)), net.now)
    assert [(c.ip, c.mac) for c in effects.leases] == [(offer["yiaddr"], HOST_MAC)]
    net.now += 600
    renewal = client_frame(dhcp.REQUEST, ciaddr=offer["yiaddr"], src=offer["yiaddr"], dst=str(GATEWAY4),
                           eth_dst=net.config.homenet("home1").gateway_mac)
    effects = net.core.packet_in(HOME, 1, 0, renewal, net.now)
    assert not effects.leases
    reply = packet.Packet(bytes(effects[HOME][0].data))
    assert reply.get_protocol(ipv4.ipv4).dst == offer["yiaddr"]  # unicast to the renewing host
    assert reply.get_protocol(ryu_dhcp.dhcp).options.option_list[0].value == bytes([dhcp.ACK])


def test_renewal_extends_the_lease_and_an_unrenewed_lease_goes_to_another_host():
    net = _net(pool_start="198.51.100.200", pool_end="198.51.100.200", lease_time_s=100)
    address = lease(net)
    net.now += 90
    renewal = client_frame(dhcp.REQUEST, ciaddr=address, src=address, dst=str(GATEWAY4))
    assert answer(net, renewal)["kind"] == dhcp.ACK
    net.now += 90  # 180 s after the first lease: alive only thanks to the renewal
    assert answer(net, client_frame(dhcp.DISCOVER, OTHER_MAC)) is None  # the pool's one address is taken
    net.now += 20
    assert lease(net, OTHER_MAC) == address


def test_two_hosts_get_different_addresses_and_one_cannot_take_the_others():
    net = _net()
    first, second = lease(net, HOST_MAC), lease(net, OTHER_MAC)
    assert first != second
    nak = answer(net, client_frame(dhcp.REQUEST, OTHER_MAC, requested=first))
    assert nak["kind"] == dhcp.NAK and nak["ip"].dst == "255.255.255.255"
    assert net.core.autoconf.books["home1"].lease_of(HOST_MAC).ip == ipaddress.IPv4Address(first)


def test_a_static_hosts_address_is_never_offered():
    net = _net(pool_start="198.51.100.10", pool_end="198.51.100.11")
    net.packet_in(HOME, "mspmb-lan1", arp_frame(1, H1_MAC, "198.51.100.10", "198.51.100.1"))  # h1, static
    for index in range(2):
        offer = answer(net, client_frame(dhcp.DISCOVER, f"02:00:00:00:bb:{index:02x}"))
        assert offer is None or offer["yiaddr"] == "198.51.100.11"
    nak = answer(net, client_frame(dhcp.REQUEST, OTHER_MAC, requested="198.51.100.10"))
    assert nak["kind"] == dhcp.NAK


def test_a_discover_flood_from_random_macs_holds_offers_for_seconds_only():
    net = _net(pool_start="198.51.100.200", pool_end="198.51.100.209")
    rng = random.Random(1)
    for _ in range(500):
        mac = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
        answer(net, client_frame(dhcp.DISCOVER, mac))
    book = net.core.autoconf.books["home1"]
    assert len(book.offers) <= core_leases.MAX_OFFERS and len(book.by_ip) <= 10
    assert answer(net, client_frame(dhcp.DISCOVER)) is None  # all ten reserved right now
    net.now += core_leases.OFFER_HOLD_S + 1
    assert lease(net) is not None  # the reservations lapsed: a real host gets an address


def test_bound_leases_exhaust_the_pool_until_they_expire():
    net = _net(pool_start="198.51.100.200", pool_end="198.51.100.202", lease_time_s=300)
    for index in range(3):
        lease(net, f"02:00:00:00:cc:{index:02x}")
    assert answer(net, client_frame(dhcp.DISCOVER)) is None
    net.now += 301
    assert lease(net) in {"198.51.100.200", "198.51.100.201", "198.51.100.202"}


def test_release_frees_the_address_and_decline_keeps_it_out_of_the_pool():
    net = _net(pool_start="198.51.100.200", pool_end="198.51.100.201")
    address = lease(net)
    effects = net.core.packet_in(HOME, 1, 0, client_frame(dhcp.RELEASE, ciaddr=address, src=address), net.now)
    assert [(c.ip, c.mac) for c in effects.leases] == [(address, None)]
    declined = lease(net, OTHER_MAC)
    net.packet_in(HOME, "mspmb-lan1", client_frame(dhcp.DECLINE, OTHER_MAC, requested=declined))
    third = lease(net, "02:00:00:00:dd:01")
    assert third != declined


@pytest.mark.parametrize("mangle", [
    lambda f: f[:60],  # truncated
    lambda f: f[:6] + bytes.fromhex("020000000099") + f[12:],  # chaddr is not the sender
    lambda f: f[:282] + b"\0\0\0\0" + f[286:],  # no magic cookie
    lambda f: f[:-8] + bytes([53, 9, 1]),  # an option that runs past the end
    lambda f: f[:12] + b"\x81\x00\x00\x05" + f[12:],  # VLAN-tagged
])
def test_malformed_dhcp_is_ignored_quietly(mangle):
    net = _net()
    ignored = net.core.ignored_packets
    assert net.packet_in(HOME, "mspmb-lan1", mangle(client_frame(dhcp.DISCOVER))) == []
    assert net.core.ignored_packets == ignored + 1
    assert not net.core.autoconf.books["home1"].by_ip


def test_dhcp_from_a_tunnel_port_is_not_answered():
    net = _net()
    assert net.packet_in(HOME, "edge1-ispA", client_frame(dhcp.DISCOVER)) == []


def test_a_homenet_with_autoconf_off_has_no_punt_flows_and_answers_nothing():
    net = _net(enabled=False)
    discover = {"eth_type": 0x0800, "eth_src": HOST_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff", "ipv4_src": "0.0.0.0",
                "ipv4_dst": "255.255.255.255", "ip_proto": 17, "udp_src": 68, "udp_dst": 67}
    assert "CONTROLLER" not in [o.port for o in net.switch(HOME).process(1, discover)]
    assert net.packet_in(HOME, "mspmb-lan1", client_frame(dhcp.DISCOVER)) == []


def test_leases_survive_a_warm_restart(tmp_path):
    config = parse_config(_data())
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    net = Harness(config, core=load_core(config, store.load()))
    net.connect_all()
    effects = net.core.packet_in(HOME, 1, 0, client_frame(dhcp.DISCOVER), net.now)
    offered = packet.Packet(bytes(effects[HOME][0].data)).get_protocol(ryu_dhcp.dhcp).yiaddr
    effects = net.core.packet_in(HOME, 1, 0, client_frame(dhcp.REQUEST, requested=offered,
                                                          server_id=str(GATEWAY4)), net.now)
    store.put_leases(effects.leases)
    store.close()

    store = SqliteStore(str(tmp_path / "state.sqlite"))  # the controller restarts
    restarted = Harness(config, core=load_core(config, store.load(), now=5000.0))
    restarted.now = 5000.0
    restarted.connect_all()
    book = restarted.core.autoconf.books["home1"]
    # The pool's first free address for OTHER_MAC is never the one HOST_MAC holds.
    for index in range(20):
        offer = answer(restarted, client_frame(dhcp.DISCOVER, f"02:00:00:00:ee:{index:02x}"))
        assert offer["yiaddr"] != offered
    assert answer(restarted, client_frame(dhcp.REQUEST, OTHER_MAC, requested=offered))["kind"] == dhcp.NAK
    assert answer(restarted, client_frame(dhcp.DISCOVER))["yiaddr"] == offered  # its holder gets it back
    assert book.lease_of(HOST_MAC).ip == ipaddress.IPv4Address(offered)


def test_removing_a_homenet_removes_its_stored_leases(tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    store.put_leases([core_leases.LeaseChange("home1", "198.51.100.130", HOST_MAC)])
    assert store.load().leases == (("home1", "198.51.100.130", HOST_MAC),)
    store.delete_homenet("home1")
    assert store.load().leases == ()


# --- router advertisements ---------------------------------------------------------------------


def rs_frame(src_mac: str = HOST_MAC, source: str = "fe80::1", hop_limit: int = 255) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="33:33:00:00:00:02", src=src_mac, ethertype=0x86DD))
    pkt.add_protocol(ipv6.ipv6(src=source, dst="ff02::2", nxt=58, hop_limit=hop_limit))
    pkt.add_protocol(icmpv6.icmpv6(type_=icmpv6.ND_ROUTER_SOLICIT,
                                   data=icmpv6.nd_router_solicit(option=icmpv6.nd_option_sla(hw_src=src_mac))))
    pkt.serialize()
    return bytes(pkt.data)


def ra_options(frame: bytes) -> tuple[ipv6.ipv6, icmpv6.icmpv6, dict[int, bytes]]:
    pkt = packet.Packet(frame)
    ip6, icmp = pkt.get_protocol(ipv6.ipv6), pkt.get_protocol(icmpv6.icmpv6)
    raw = frame[14 + 40 + 16:]
    options = {}
    while raw:
        options[raw[0]] = raw[2:8 * raw[1]]
        raw = raw[8 * raw[1]:]
    return ip6, icmp, options


def test_a_router_solicitation_is_answered_with_prefix_mtu_and_rdnss():
    net = _net()
    outs = net.packet_in(HOME, "mspmb-lan2", rs_frame())
    assert len(outs) == 1 and outs[0].actions[0].port == net.ports[HOME]["mspmb-lan2"]
    ip6, icmp, options = ra_options(bytes(outs[0].data))
    gateway_mac = net.config.homenet("home1").gateway_mac
    assert icmp.type_ == icmpv6.ND_ROUTER_ADVERT and ip6.hop_limit == 255
    assert ipaddress.IPv6Address(ip6.src) == ra.link_local(gateway_mac) and ip6.src.startswith("fe80::")
    assert ip6.dst == "ff02::1"
    assert icmp.data.rou_l > 0  # a default router
    prefix = options[ra.OPT_PREFIX]
    assert prefix[0] == 64 and prefix[1] & ra.FLAG_AUTONOMOUS and prefix[1] & ra.FLAG_ON_LINK
    assert ipaddress.IPv6Address(prefix[14:30]) == ipaddress.IPv6Address("2001:db8:100::")
    assert struct.unpack("!I", options[ra.OPT_MTU][2:6])[0] == 1450
    assert ipaddress.IPv6Address(options[ra.OPT_RDNSS][6:22]) == ipaddress.IPv6Address("2001:db8:200::53")
    assert struct.unpack("!I", options[ra.OPT_RDNSS][2:6])[0] >= 600  # outlives an advertisement interval
    assert options[ra.OPT_SOURCE_LL] == bytes.fromhex(gateway_mac.replace(":", ""))
    # Ryu computes the same checksum: the frame is well formed.
    again = packet.Packet(bytes(outs[0].data))
    assert again.get_protocol(icmpv6.icmpv6).csum == icmp.csum


def test_the_gateways_link_local_address_is_answered_by_neighbour_discovery():
    net = _net()
    target = str(ra.link_local(net.config.homenet("home1").gateway_mac))
    outs = net.packet_in(HOME, "mspmb-lan1", nd_frame(icmpv6.ND_NEIGHBOR_SOLICIT, HOST_MAC, "fe80::aa01", target))
    reply = packet.Packet(bytes(outs[0].data)).get_protocol(icmpv6.icmpv6)
    assert reply.type_ == icmpv6.ND_NEIGHBOR_ADVERT and reply.data.dst == target


def test_solicitations_in_a_loop_get_one_advertisement_per_interval_and_bad_ones_none():
    net = _net()
    assert len(net.packet_in(HOME, "mspmb-lan1", rs_frame())) == 1
    assert net.packet_in(HOME, "mspmb-lan1", rs_frame()) == []
    net.now += core_autoconf.MIN_DELAY_BETWEEN_RAS_S
    assert len(net.packet_in(HOME, "mspmb-lan1", rs_frame())) == 1
    net.now += 10
    assert net.packet_in(HOME, "mspmb-lan1", rs_frame(hop_limit=64)) == []  # routed from afar
    assert net.packet_in(HOME, "mspmb-lan1", rs_frame(source="::")) == []  # SLLA from :: (RFC 4861)
    bad_checksum = bytearray(rs_frame())
    bad_checksum[56] ^= 0xFF
    assert net.packet_in(HOME, "mspmb-lan1", bytes(bad_checksum)) == []


def test_unsolicited_advertisements_go_out_of_every_lan_port_then_every_interval():
    net = _net(ra_interval_s=60)
    sent_at = []
    for _ in range(200):
        outs = [m for m in net.advance(1.0).get(HOME, []) if isinstance(m, ofmsg.parser.OFPPacketOut)
                and ra_options(bytes(m.data))[1].type_ == icmpv6.ND_ROUTER_ADVERT]
        if outs:
            assert sorted(m.actions[0].port for m in outs) == sorted(net.ports[HOME][p] for p in ("mspmb-lan1",
                                                                                                   "mspmb-lan2"))
            sent_at.append(net.now)
    assert sent_at[0] <= core_autoconf.INITIAL_SPREAD_S + 1
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert gaps and all(20 - 1 <= gap <= 60 + 1 for gap in gaps), gaps


def test_periodic_advertisements_of_many_homenets_are_spread_over_time():
    """10,000 homenets: no tick sends them all, and no tick looks at more than are due."""
    service = core_autoconf.HostAutoconf(random.Random(3))
    homenet = parse_config(_data()).homenet("home1")
    homenets = {f"h{i}": dataclasses.replace(homenet, name=f"h{i}") for i in range(10_000)}
    for spec in homenets.values():
        service.start_adverts(spec, 0.0)
    per_tick = []
    for tick in range(1, 1200):
        sends = service.adverts(float(tick), homenets.get, lambda spec: [1])
        per_tick.append(len(sends))
    assert sum(per_tick[:17]) == 10_000  # everyone's first advertisement within the initial spread
    assert max(per_tick) < 1500  # ~625 a second at first, never one burst of all
    steady = per_tick[700:]
    assert max(steady) < 3 * 10_000 / 600 + 40, max(steady)  # ~25 a second at the 600 s interval


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("autoconf, field, words", [
    ({"pool_start": "198.51.101.5"}, "autoconf.pool_start", "not a host address"),
    ({"pool_start": "198.51.100.0"}, "autoconf.pool_start", "not a host address"),
    ({"pool_start": "198.51.100.200", "pool_end": "198.51.100.100"}, "autoconf.pool_end", "before"),
    ({"pool_start": "198.51.100.1"}, "autoconf.pool_start", "gateway"),
    ({"pool_end": "banana"}, "autoconf.pool_end", "not an IPv4 address"),
    ({"lease_time_s": 5}, "autoconf.lease_time_s", "out of range"),
    ({"mtu": 1000}, "autoconf.mtu", "out of range"),
    ({"dns": ["224.0.0.1"]}, "autoconf.dns[0]", "resolver"),
    ({"dns": "203.0.113.53"}, "autoconf.dns", "list"),
    ({"enabled": "yes"}, "autoconf.enabled", "true or false"),
    ({"dhcp": True}, "autoconf.dhcp", "unknown field"),
])
def test_bad_autoconf_settings_are_refused_naming_the_field(autoconf, field, words):
    data = _data()
    data["homenets"][0]["autoconf"] = autoconf
    with pytest.raises(FieldError) as err:
        parse_config(data)
    assert field in str(err.value) and words in str(err.value)


def test_slaac_needs_a_64():
    data = _data()
    data["homenets"][0]["lan_ipv6"] = "2001:db8:100::1/56"
    assert not parse_config(data).homenets[0].autoconf.slaac  # off by default then
    data["homenets"][0]["autoconf"] = {"slaac": True}
    with pytest.raises(FieldError, match="autoconf.slaac"):
        parse_config(data)


def test_defaults_leave_the_lower_half_to_static_hosts():
    settings = parse_config(_data()).homenets[0].autoconf
    assert (str(settings.pool_start), str(settings.pool_end)) == ("198.51.100.128", "198.51.100.254")
    assert settings.mtu == 1450 and settings.lease_s == 3600 and settings.slaac and settings.enabled
