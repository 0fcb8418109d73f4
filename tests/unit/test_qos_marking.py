"""QoS marking on the fake flow tables: each class leaves the MSP's switch with its DSCP,
upstream at the MSPMB and downstream at the edge, on whichever path carries it."""
from __future__ import annotations

from typing import Any

from tests.harness import EDGE, H1_MAC, HOME, UPSTREAM_MAC, Harness, udp4, udp6

SERVER4, SERVER6, H1_4, H1_6 = "203.0.113.10", "2001:db8:200::10", "198.51.100.10", "2001:db8:100::10"
TUNNEL_A, TUNNEL_B = 11, 12
EDGE_TUNNEL_A = 11
FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}
VOICE = {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
         "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 46, "priority": "realtime"}}
GAMES = {"name": "games", "match": {"protocol": "udp", "dst_ports": [3074]},
         "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": "trust", "priority": 30}}
POLICY: dict[str, Any] = {"classes": [VOICE, GAMES],
                          "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 0}}}


def _put(net: Harness, policy: dict) -> None:
    _, messages = net.core.set_policy("home1", policy, net.now)
    net.apply(messages)


def _up(net: Harness, packet: dict) -> tuple[int, dict]:
    outputs = net.switch(HOME).process(1, packet)
    assert len(outputs) == 1, outputs
    return outputs[0].port, outputs[0].packet


def _down(net: Harness, packet: dict) -> tuple[int, dict]:
    outputs = net.switch(EDGE).process(1, packet)
    assert len(outputs) == 1, outputs
    return outputs[0].port, outputs[0].packet


def _marked(packet: dict, dscp: int) -> dict:
    return {**packet, "ip_dscp": dscp}


def test_each_class_leaves_the_mspmb_with_its_dscp(net, config):
    _put(net, POLICY)
    gw = config.homenet("home1").gateway_mac
    # Voice is marked EF whatever the host sent, on IPv4 and IPv6.
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0))[1]["ip_dscp"] == 46
    assert _up(net, _marked(udp6(H1_6, SERVER6, H1_MAC, gw, dport=20000), 10))[1]["ip_dscp"] == 46
    # The games class trusts the host: its marking passes unchanged.
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=3074), 34))[1]["ip_dscp"] == 34
    # The default class is bleached: a host cannot claim EF for its bulk traffic.
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=80), 46))[1]["ip_dscp"] == 0


def test_each_class_leaves_the_edge_towards_the_homenet_with_its_dscp(net, config):
    _put(net, POLICY)
    edge_mac = config.edge("edge1").internet_mac
    port, packet = _down(net, _marked(udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=20000, dport=5000), 0))
    assert (port, packet["ip_dscp"]) == (EDGE_TUNNEL_A, 46)
    port, packet = _down(net, _marked(udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=443, dport=5000), 46))
    assert (port, packet["ip_dscp"]) == (EDGE_TUNNEL_A, 0)
    assert _down(net, _marked(udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=3074, dport=5000), 26))[1][
        "ip_dscp"] == 26


def test_marking_follows_failover(net, config):
    _put(net, POLICY)
    gw = config.homenet("home1").gateway_mac
    net.switch(HOME).set_port_live(TUNNEL_A, False)
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0)) [0] == TUNNEL_B
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0))[1]["ip_dscp"] == 46


def test_without_qos_nothing_is_remarked(net, config):
    _put(net, {"classes": [], "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}})
    gw = config.homenet("home1").gateway_mac
    assert _up(net, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=80), 46))[1]["ip_dscp"] == 46


# --- rate limits: OpenFlow meters ---------------------------------------------------------

LIMITED = {**VOICE, "qos": {"dscp": 46, "priority": "realtime", "max_rate_kbps": 2000}}


def _kbps_meter(net: Harness, dpid: int, meter_id: int) -> tuple[int, int]:
    from ryu.ofproto import ofproto_v1_3 as ofp
    meter = net.switch(dpid).meters[meter_id]
    assert meter.flags & ofp.OFPMF_KBPS and len(meter.bands) == 1
    return meter.bands[0].rate, meter.bands[0].burst_size


def test_a_rate_limited_class_passes_its_meter_both_ways(net, config):
    _put(net, {**POLICY, "classes": [LIMITED, GAMES]})
    gw = config.homenet("home1").gateway_mac
    edge_mac = config.edge("edge1").internet_mac
    up = net.switch(HOME).process(1, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0))
    down = net.switch(EDGE).process(1, _marked(udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=20000), 0))
    [meter_up] = up[0].meters
    [meter_down] = down[0].meters
    assert meter_up >= 16 and meter_down >= 16  # 1-15 belong to the controller path's meters
    # A kbit/s drop band at the class's rate, burst of at least the rate (a smaller one
    # passes a fraction of the rate in the userspace datapath).
    assert _kbps_meter(net, HOME, meter_up) == (2000, 2000)
    assert _kbps_meter(net, EDGE, meter_down) == (2000, 2000)
    # Other classes are not limited.
    assert net.switch(HOME).process(1, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=80), 0))[0].meters == ()


def test_lifting_the_limit_removes_the_meter(net, config):
    _put(net, {**POLICY, "classes": [LIMITED, GAMES]})
    gw = config.homenet("home1").gateway_mac
    [meter_id] = net.switch(HOME).process(1, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0))[0].meters
    _put(net, POLICY)
    out = net.switch(HOME).process(1, _marked(udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000), 0))
    assert (out[0].port, out[0].meters) == (TUNNEL_A, ())
    assert meter_id not in net.switch(HOME).meters
