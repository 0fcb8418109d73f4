"""Where packets go once the controller has programmed the switches (fake flow tables)."""
from __future__ import annotations

from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.core import MspCore
from msp_controller.core.switches import union
from msp_controller.dataplane import ofmsg
from msp_controller.model.policy import DEFAULT_DAMPING_RECOVER_S
from tests.harness import (
    EDGE,
    EDGE_UNDERLAY,
    H1_MAC,
    HOME,
    LOCAL,
    UNDERLAY_A,
    UPSTREAM_MAC,
    Harness,
    udp4,
    udp6,
    via_tunnel,
)

SERVER4, SERVER6 = "203.0.113.10", "2001:db8:200::10"
H1_4, H1_6 = "198.51.100.10", "2001:db8:100::10"
LAN1, INTERNET = 1, 1
TUNNEL_A, TUNNEL_B = 11, 12  # to edge1, at both ends
TUNNEL_A2, TUNNEL_B2 = 13, 14  # MSPMB ports of the tunnels to edge2


def _from_h1(net: Harness, packet: dict) -> list:
    return net.network.trace(HOME, LAN1, packet)


def _only(results: list) -> tuple[int, object]:
    assert len(results) == 1, results
    return results[0]


def _tunnel_taken(net: Harness, packet: dict) -> int:
    outputs = net.switch(HOME).process(LAN1, packet)
    assert len(outputs) == 1, outputs
    return outputs[0].port


def test_h1_to_server_leaves_by_tunnel_a_and_reaches_the_internet(net, config):
    gw = config.homenet("home1").gateway_mac
    packet = udp4(H1_4, SERVER4, H1_MAC, gw)
    assert _tunnel_taken(net, packet) == TUNNEL_A
    dpid, out = _only(_from_h1(net, packet))
    assert (dpid, out.port) == (EDGE, INTERNET)
    assert out.packet["eth_dst"] == UPSTREAM_MAC and out.packet["eth_src"] == config.edge("edge1").internet_mac
    assert out.packet["ttl"] == 63  # the MSP is one router hop


def test_ipv6_egress_uses_the_same_path(net, config):
    gw = config.homenet("home1").gateway_mac
    packet = udp6(H1_6, SERVER6, H1_MAC, gw)
    assert _tunnel_taken(net, packet) == TUNNEL_A
    dpid, out = _only(_from_h1(net, packet))
    assert (dpid, out.port) == (EDGE, INTERNET)


def test_tunnel_a_not_live_moves_egress_to_b(net, config):
    gw = config.homenet("home1").gateway_mac
    packet = udp4(H1_4, SERVER4, H1_MAC, gw)
    net.switch(HOME).set_port_live(TUNNEL_A, False)  # the data plane alone: fast failover
    assert _tunnel_taken(net, packet) == TUNNEL_B
    net.set_live(HOME, "edge1-ispA", False)  # then the controller hears of it
    assert _tunnel_taken(net, packet) == TUNNEL_B
    assert net.core.homenets["home1"].choices["egress"][0].active[0].uplink == "ispB"


def test_tunnel_dead_at_the_far_end_only_moves_both_directions(net, config):
    """BFD down at the edge but not (yet) at the MSPMB: the controller reorders both ends."""
    gw = config.homenet("home1").gateway_mac
    net.set_live(EDGE, "vxlan-slot0", False)
    net.switch(EDGE).set_port_live(TUNNEL_A, False)
    assert _tunnel_taken(net, udp4(H1_4, SERVER4, H1_MAC, gw)) == TUNNEL_B
    inbound = net.switch(EDGE).process(INTERNET, udp4(SERVER4, H1_4, UPSTREAM_MAC, config.edge("edge1").internet_mac))
    assert [o.port for o in inbound] == [TUNNEL_B]


def test_failback_when_tunnel_a_returns(net, config):
    gw = config.homenet("home1").gateway_mac
    net.set_live(HOME, "edge1-ispA", False)
    net.set_live(HOME, "edge1-ispA", True)
    net.advance(DEFAULT_DAMPING_RECOVER_S)  # flap damping: a returned tunnel waits this long
    assert _tunnel_taken(net, udp4(H1_4, SERVER4, H1_MAC, gw)) == TUNNEL_A


def test_internet_to_h1_reaches_h1_port(net, config):
    edge_mac = config.edge("edge1").internet_mac
    for packet in (udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac), udp6(SERVER6, H1_6, UPSTREAM_MAC, edge_mac)):
        dpid, out = _only(net.network.trace(EDGE, INTERNET, packet))
        assert (dpid, out.port) == (HOME, LAN1)
        assert out.packet["eth_dst"] == H1_MAC
        assert out.packet["eth_src"] == config.homenet("home1").gateway_mac
        assert out.packet["ttl"] == 63


def test_inbound_enters_by_tunnel_a_then_b_when_a_is_down(net, config):
    edge_mac = config.edge("edge1").internet_mac
    packet = udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac)
    assert [o.port for o in net.switch(EDGE).process(INTERNET, packet)] == [TUNNEL_A]
    net.switch(EDGE).set_port_live(TUNNEL_A, False)
    assert [o.port for o in net.switch(EDGE).process(INTERNET, packet)] == [TUNNEL_B]


def test_unknown_host_goes_to_controller_which_solicits_it(net, config):
    edge_mac = config.edge("edge1").internet_mac
    results = net.network.trace(EDGE, INTERNET, udp4(SERVER4, "198.51.100.99", UPSTREAM_MAC, edge_mac))
    assert [out.port for _, out in results] == ["CONTROLLER"]


def test_spoofed_source_from_a_host_is_dropped(net, config):
    gw = config.homenet("home1").gateway_mac
    assert _from_h1(net, udp4("192.0.2.66", SERVER4, H1_MAC, gw)) == []
    assert _from_h1(net, udp6("2001:db8:999::1", SERVER6, H1_MAC, gw)) == []


def test_spoofed_source_arriving_at_the_edge_is_dropped(net, config):
    """Even if an MSPMB were compromised, the edge only admits the homenet's prefixes."""
    spoofed = udp4("192.0.2.66", SERVER4, "02:00:00:00:00:01", "02:00:00:00:00:02")
    assert net.switch(EDGE).process(TUNNEL_A, via_tunnel(net.config, spoofed)) == []
    own = udp4(H1_4, SERVER4, "02:00:00:00:00:01", "02:00:00:00:00:02")
    assert net.switch(EDGE).process(TUNNEL_A, via_tunnel(net.config, own)) != []


def test_internet_traffic_not_for_the_pi_prefix_is_dropped(net, config):
    edge_mac = config.edge("edge1").internet_mac
    assert net.switch(EDGE).process(INTERNET, udp4(SERVER4, "192.0.2.10", UPSTREAM_MAC, edge_mac)) == []


def test_host_to_host_stays_inside_the_homenet(net, config):
    gw = config.homenet("home1").gateway_mac
    dpid, out = _only(_from_h1(net, udp4(H1_4, "198.51.100.20", H1_MAC, gw)))
    assert (dpid, out.port) == (HOME, 2)


def test_underlay_admits_only_tunnel_traffic_from_the_edge(net, config):
    underlay = net.switch(UNDERLAY_A)
    edge_a = str(config.edge("edge1").tunnel_ip(0))
    vxlan = {"eth_type": 0x0800, "ipv4_src": edge_a, "ipv4_dst": "198.18.1.2", "ip_proto": 17,
             "udp_src": 50000, "udp_dst": 4789}
    assert [o.port for o in underlay.process(1, vxlan)] == ["LOCAL"]
    assert underlay.process(1, dict(vxlan, ipv4_src="198.18.99.1")) == []  # not our edge
    assert underlay.process(1, dict(vxlan, udp_dst=22, ip_proto=6, tcp_dst=22)) == []
    assert [o.port for o in underlay.process(LOCAL, vxlan)] == [1]  # everything we send leaves
    edge_underlay = net.switch(EDGE_UNDERLAY)
    assert [o.port for o in edge_underlay.process(1, dict(vxlan, ipv4_src="198.18.1.2", ipv4_dst=edge_a))] == ["LOCAL"]


def test_no_live_tunnel_is_recorded(net):
    for port in ("edge1-ispA", "edge1-ispB", "edge2-ispA", "edge2-ispB"):
        net.set_live(HOME, port, False)
    assert net.core.homenets["home1"].choices["egress"][0].active == ()
    assert [c.new for c in net.core.path_changes][-2:] == [None, None]


def test_reconnect_with_same_state_sends_nothing_but_a_barrier(net):
    """A switch that reconnects holding the right flows and groups is left untouched."""
    for dpid in (HOME, EDGE, UNDERLAY_A):
        before = list(net.sent)
        net.connect(dpid)
        changes = [m for _, m in net.sent[len(before):]
                   if isinstance(m, (ofmsg.parser.OFPFlowMod, ofmsg.parser.OFPGroupMod))]
        assert changes == []


def test_controller_restart_keeps_learned_hosts_and_changes_nothing(net, config):
    restarted = Harness(config, core=MspCore(config), network=net.network)
    restarted.connect_all()
    changes = [m for _, m in restarted.sent if isinstance(m, (ofmsg.parser.OFPFlowMod, ofmsg.parser.OFPGroupMod))]
    assert changes == []
    edge_mac = config.edge("edge1").internet_mac
    dpid, out = _only(net.network.trace(EDGE, INTERNET, udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac)))
    assert (dpid, out.port, out.packet["eth_dst"]) == (HOME, LAN1, H1_MAC)


def test_stale_flows_and_groups_are_removed_on_reconnect(net, config):
    stale = ofmsg.Flow(1, 150, ofmsg.match(eth_type=0x0800, ipv4_dst="192.0.2.1"), (ofmsg.Output(2),))
    net.switch(HOME).apply([ofmsg.flow_add(stale), ofmsg.group_add(ofmsg.Group(999, "all", ()))])
    net.connect(HOME)
    assert all(f.cookie != stale.cookie for f in net.switch(HOME).flows())
    assert 999 not in net.switch(HOME).groups


def test_wrong_group_order_is_corrected_on_reconnect(net):
    group_id = 0x101
    wrong = ofmsg.Group(group_id, "ff", (ofmsg.Bucket((ofmsg.Output(TUNNEL_B),), watch_port=TUNNEL_B),))
    net.switch(HOME).apply([ofmsg.group_modify(wrong)])
    net.connect(HOME)
    buckets = net.switch(HOME).groups[group_id].buckets
    assert [b.watch_port for b in buckets] == [TUNNEL_A, TUNNEL_B, TUNNEL_A2, TUNNEL_B2]


def test_every_generated_flow_fits_the_pipeline(net):
    # Every part the core installs is checked against the declared pipeline; exercise every role.
    for dpid in (HOME, EDGE, UNDERLAY_A, EDGE_UNDERLAY):
        assert union(net.core.switches[dpid].parts).flows
    assert ofp.OFPP_LOCAL == LOCAL
