"""The edge's tunnels run no BFD: they return the MSPMB's BFD packets, and the controller
relays the MSPMB's verdict on each tunnel to the edge's groups."""
from __future__ import annotations

import dataclasses
import ipaddress

from ryu.ofproto import ofproto_v1_3_parser as parser

from msp_controller.dataplane.provision import edge_commands, mspmb_commands
from msp_controller.model.config import edge_tunnel_port, mspmb_tunnel_port
from msp_controller.model.policy import DEFAULT_DAMPING_RECOVER_S
from tests.harness import EDGE, HOME, UPSTREAM_MAC, udp4, via_tunnel

SERVER4, H1_4 = "203.0.113.10", "198.51.100.10"
INTERNET = 1
TUNNEL_A, TUNNEL_B = 11, 12
BFD_MAC = "00:23:20:00:00:01"  # the destination Open vSwitch gives BFD control packets


def bfd_packet(ttl: int = 255) -> dict:
    return {"eth_src": "02:00:00:00:00:09", "eth_dst": BFD_MAC, "eth_type": 0x0800, "ip_proto": 17,
            "ipv4_src": "169.254.1.1", "ipv4_dst": "169.254.1.0", "udp_src": 49152, "udp_dst": 3784, "ttl": ttl}


def inbound(net, config) -> list[int]:
    packet = udp4(SERVER4, H1_4, UPSTREAM_MAC, config.edge("edge1").internet_mac)
    return [out.port for out in net.switch(EDGE).process(INTERNET, packet)]


def test_the_edge_returns_bfd_through_the_tunnel_it_came_in_unchanged(net, config):
    home = config.homenet("home1")
    for slot, tunnel in enumerate((TUNNEL_A, TUNNEL_B)):
        outputs = net.switch(EDGE).process(tunnel, via_tunnel(config, bfd_packet(), slot))
        assert [out.port for out in outputs] == [tunnel]
        assert outputs[0].packet["ttl"] == 255  # BFD drops a packet whose TTL is not 255
        assert outputs[0].packet["ipv4_dst"] == "169.254.1.0"
        # back to the box's own address, with its key: the shared port then reaches it
        assert outputs[0].packet["tun_ipv4_dst"] == str(home.uplinks[slot].address)
        assert outputs[0].packet["tunnel_id"] == home.id


def test_bfd_from_an_unknown_address_or_key_is_not_returned(net, config):
    """The edge is no reflector for whoever sends it VXLAN: only a known box's end counts."""
    genuine = via_tunnel(config, bfd_packet(), 0)
    for forged in ({**genuine, "tun_ipv4_src": "198.18.1.99"}, {**genuine, "tunnel_id": 2}):
        assert net.switch(EDGE).process(TUNNEL_A, forged) == []


def test_a_renumbered_uplink_moves_the_edges_end_and_nothing_else(net, config):
    """A new lease at ISP A: the edge sends ISP A's tunnel to the new address; ISP B's part
    of the program is not touched."""
    home = config.homenet("home1")
    renumbered = dataclasses.replace(home, uplinks=(
        dataclasses.replace(home.uplinks[0], address=ipaddress.IPv4Address("198.18.1.77")), home.uplinks[1]))
    net.apply(net.core.set_uplink_address("home1", "ispA", renumbered.uplinks[0].address, net.now))
    outputs = net.switch(EDGE).process(INTERNET, udp4(SERVER4, H1_4, UPSTREAM_MAC, config.edge("edge1").internet_mac))
    assert [(o.port, o.packet["tun_ipv4_dst"]) for o in outputs] == [(TUNNEL_A, "198.18.1.77")]
    old = via_tunnel(config, bfd_packet(), 0)
    assert net.switch(EDGE).process(TUNNEL_A, old) == []
    assert net.switch(EDGE).process(TUNNEL_A, {**old, "tun_ipv4_src": "198.18.1.77"}) != []
    assert net.switch(EDGE).process(TUNNEL_B, via_tunnel(config, bfd_packet(), 1)) != []


def test_bfd_from_the_internet_is_not_returned(net, config):
    packet = {**bfd_packet(), "eth_dst": config.edge("edge1").internet_mac}
    assert [out.port for out in net.switch(EDGE).process(INTERNET, packet)] != [INTERNET]


def test_the_mspmb_verdict_moves_inbound_traffic_at_the_edge(net, config):
    """The edge's own tunnel port stays live (no BFD there): only the relay can move it."""
    assert inbound(net, config) == [TUNNEL_A]
    net.set_live(HOME, "edge1-ispA", False)
    assert net.switch(EDGE).port_is_live(TUNNEL_A)
    assert inbound(net, config) == [TUNNEL_B]
    net.set_live(HOME, "edge1-ispA", True)
    net.advance(DEFAULT_DAMPING_RECOVER_S)  # flap damping: a returned tunnel waits this long
    assert inbound(net, config) == [TUNNEL_A]


def test_the_relay_rewrites_groups_only(net):
    """A tunnel's death costs the edge one group modification per class, no flow changes."""
    messages = net.set_live(HOME, "edge1-ispA", False)
    assert messages.get(EDGE)
    assert all(isinstance(m, (parser.OFPGroupMod, parser.OFPBarrierRequest)) for m in messages[EDGE])


def test_only_the_mspmb_runs_bfd(config):
    home = config.homenet("home1")
    edge = config.edge("edge1")
    edge_tunnels = [c for c in edge_commands(config, edge) if any(edge_tunnel_port(u) in c for u in home.uplinks)]
    home_tunnels = [c for c in mspmb_commands(config, home)
                    if any(mspmb_tunnel_port(edge, u) in c for u in home.uplinks)]
    assert edge_tunnels and all("bfd:enable=false" in c for c in edge_tunnels)
    # one port per slot for every homenet: remote and key come from the flows
    assert all("options:remote_ip=flow" in c and "options:key=flow" in c for c in edge_tunnels)
    assert home_tunnels and all("bfd:enable=true" in c for c in home_tunnels)


def test_a_hosts_own_udp_to_bfds_port_goes_to_the_internet_not_back_into_its_tunnel(net, config):
    """The box's BFD takes any UDP to port 3784 that comes out of a tunnel: returned, a host's
    packet would never reach the Internet (tests/integration/test_qos.py: 0 of 2,000 did)."""
    edge = config.edge("edge1")
    packet = {**bfd_packet(), "ipv4_src": H1_4, "ipv4_dst": SERVER4}
    outputs = net.switch(EDGE).process(TUNNEL_A, via_tunnel(config, packet, 0))
    assert [out.port for out in outputs] == [INTERNET]
    assert outputs[0].packet["eth_src"] == edge.internet_mac
