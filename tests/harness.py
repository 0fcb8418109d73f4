"""Drive MspCore against fake switches: the controller's messages land in FakeSwitch tables.

The reference homenet's MSPMB and edge are joined by two fake links, one per tunnel, so a
packet can be traced from a host's port to the Internet port and back.
"""
from __future__ import annotations

from typing import Any

from ryu.lib.packet import arp, ethernet, icmpv6, ipv6, packet
from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.core import Messages, MspCore, PortState
from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.meters import meter_signature
from msp_controller.dataplane.reconcile import ReportedFlow
from msp_controller.model.config import Homenet, MspConfig
from tests.fakeoftable import FakeNetwork, FakeSwitch

HOME, EDGE, EDGE2 = 0x101, 0xE1, 0xE3
UNDERLAY_A, UNDERLAY_B, EDGE_UNDERLAY, EDGE2_UNDERLAY = 0x111, 0x112, 0xE2, 0xE4
PORTS = {
    HOME: {"mspmb-lan1": 1, "mspmb-lan2": 2, "edge1-ispA": 11, "edge1-ispB": 12, "edge2-ispA": 13,
           "edge2-ispB": 14},
    EDGE: {"edge1-inet": 1, "vxlan-slot0": 11, "vxlan-slot1": 12},
    EDGE2: {"edge2-inet": 1, "vxlan-slot0": 11, "vxlan-slot1": 12},
    UNDERLAY_A: {"mspmb-ispA": 1},
    UNDERLAY_B: {"mspmb-ispB": 1},
    EDGE_UNDERLAY: {"edge1-up": 1},
    EDGE2_UNDERLAY: {"edge2-up": 1},
}
H1_MAC, H2_MAC, UPSTREAM_MAC = "00:00:00:00:00:10", "00:00:00:00:00:20", "0a:00:00:00:00:01"
UPSTREAM2_MAC = "0a:00:00:00:00:02"


def link_tunnels(network: FakeNetwork, config: MspConfig, home: int = HOME, homenet: Homenet | None = None) -> None:
    """A homenet's four tunnels: its MSPMB's own port to each edge's shared port for that
    uplink's slot, keyed by the homenet's id, ending at the uplink's address."""
    homenet = homenet or config.homenets[0]
    for home_port, (edge_dpid, edge_name) in zip((11, 12, 13, 14), ((EDGE, "edge1"), (EDGE, "edge1"),
                                                                    (EDGE2, "edge2"), (EDGE2, "edge2")), strict=True):
        uplink = homenet.uplinks[(home_port - 11) % 2]
        edge = config.edge(edge_name)
        network.tunnel((home, home_port), (edge_dpid, 11 + uplink.slot), homenet.id, str(uplink.address),
                       str(edge.tunnel_ip(uplink.slot)))


def via_tunnel(config: MspConfig, packet: dict[str, Any], slot: int = 0, edge: str = "edge1") -> dict[str, Any]:
    """A packet as the edge's shared tunnel port for `slot` receives it from the reference
    homenet's box: with the homenet's key and the uplink's address."""
    homenet = config.homenets[0]
    return {**packet, "tunnel_id": homenet.id, "tun_ipv4_src": str(homenet.uplinks[slot].address),
            "tun_ipv4_dst": str(config.edge(edge).tunnel_ip(slot))}


class Harness:
    def __init__(self, config: MspConfig, core: MspCore | None = None,
                 network: FakeNetwork | None = None, ports: dict[int, dict[str, int]] | None = None) -> None:
        self.config = config
        self.core = core or MspCore(config)
        self.now = 0.0
        self.sent: list[tuple[int, Any]] = []
        self.ports = {dpid: dict(names) for dpid, names in (ports or PORTS).items()}
        if network is None:
            network = FakeNetwork()
            for dpid, names in self.ports.items():
                network.add_switch(FakeSwitch(dpid, {number: True for number in names.values()}))
            link_tunnels(network, config)
        self.network = network

    def switch(self, dpid: int) -> FakeSwitch:
        return self.network.switches[dpid]

    def apply(self, messages: Messages) -> Messages:
        for dpid, batch in messages.items():
            # Stats requests are answered by connect(), not by the fake table.
            self.switch(dpid).apply(m for m in batch if not isinstance(m, ofmsg.parser.OFPMultipartRequest))
            self.sent += [(dpid, message) for message in batch]
        return messages

    def connect(self, dpid: int) -> Messages:
        """A switch connects: ports, then the stats replies the fake switch would give."""
        ports = {name: PortState(number, self.switch(dpid).port_is_live(number))
                 for name, number in self.ports[dpid].items()}
        self.apply(self.core.switch_up(dpid, ports, self.now))
        fake = self.switch(dpid)
        flows = [ReportedFlow(f.table_id, f.priority, f.cookie, f.ofp_match) for f in fake.flows()]
        groups = {g.group_id: ofmsg.group_signature(g.type, g.buckets) for g in fake.groups.values()}
        meters = {m.meter_id: meter_signature(m.flags, m.bands) for m in fake.meters.values()}
        self.apply(self.core.flow_stats(dpid, flows, False, self.now))
        self.apply(self.core.group_desc(dpid, groups, False, self.now))
        return self.apply(self.core.meter_config(dpid, meters, False, self.now))

    def connect_all(self) -> None:
        for dpid in self.ports:
            self.connect(dpid)

    def set_live(self, dpid: int, name: str, live: bool) -> Messages:
        number = self.ports[dpid][name]
        self.switch(dpid).set_port_live(number, live)
        return self.apply(self.core.port_status(dpid, name, PortState(number, live), self.now))

    def advance(self, seconds: float) -> Messages:
        """Time passes: the core's periodic tick runs (flap damping ends, hold-downs expire)."""
        self.now += seconds
        return self.apply(self.core.tick(self.now))

    def packet_in(self, dpid: int, port_name: str, frame: bytes, table_id: int = 0) -> list[Any]:
        """Hand a frame to the controller; return the packet-outs it sends."""
        messages = self.apply(self.core.packet_in(dpid, self.ports[dpid][port_name], table_id, frame, self.now))
        return [m for m in messages.get(dpid, []) if isinstance(m, ofmsg.parser.OFPPacketOut)]

    def learn_hosts_and_upstream(self) -> None:
        self.packet_in(HOME, "mspmb-lan1", arp_frame(arp.ARP_REQUEST, H1_MAC, "198.51.100.10", "198.51.100.1"))
        self.packet_in(HOME, "mspmb-lan2", arp_frame(arp.ARP_REQUEST, H2_MAC, "198.51.100.20", "198.51.100.1"))
        self.packet_in(EDGE, "edge1-inet", arp_frame(arp.ARP_REPLY, UPSTREAM_MAC, "198.18.20.1", "198.18.20.2"))
        self.packet_in(EDGE2, "edge2-inet", arp_frame(arp.ARP_REPLY, UPSTREAM2_MAC, "198.18.21.1", "198.18.21.2"))
        self.packet_in(HOME, "mspmb-lan1", nd_frame(icmpv6.ND_NEIGHBOR_SOLICIT, H1_MAC, "2001:db8:100::10",
                                                    "2001:db8:100::1"))
        self.packet_in(EDGE, "edge1-inet", nd_frame(icmpv6.ND_NEIGHBOR_ADVERT, UPSTREAM_MAC, "2001:db8:ff20::1",
                                                    "2001:db8:ff20::1", dst="2001:db8:ff20::2"))


def arp_frame(opcode: int, src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=opcode, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def nd_frame(type_: int, src_mac: str, src_ip: str, target: str, dst: str = "ff02::1:ff00:1") -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="33:33:ff:00:00:01", src=src_mac, ethertype=0x86DD))
    pkt.add_protocol(ipv6.ipv6(src=src_ip, dst=dst, nxt=58, hop_limit=255))
    option = (icmpv6.nd_option_sla if type_ == icmpv6.ND_NEIGHBOR_SOLICIT else icmpv6.nd_option_tla)(hw_src=src_mac)
    pkt.add_protocol(icmpv6.icmpv6(type_=type_, data=icmpv6.nd_neighbor(dst=target, option=option)))
    pkt.serialize()
    return bytes(pkt.data)


def udp4(src: str, dst: str, eth_src: str, eth_dst: str, sport: int = 4000, dport: int = 5001) -> dict[str, Any]:
    return {"eth_type": 0x0800, "eth_src": eth_src, "eth_dst": eth_dst, "ipv4_src": src, "ipv4_dst": dst,
            "ip_proto": 17, "udp_src": sport, "udp_dst": dport, "ttl": 64}


def udp6(src: str, dst: str, eth_src: str, eth_dst: str, sport: int = 4000, dport: int = 5001) -> dict[str, Any]:
    return {"eth_type": 0x86DD, "eth_src": eth_src, "eth_dst": eth_dst, "ipv6_src": src, "ipv6_dst": dst,
            "ip_proto": 17, "udp_src": sport, "udp_dst": dport, "ttl": 64}


LOCAL = ofp.OFPP_LOCAL
