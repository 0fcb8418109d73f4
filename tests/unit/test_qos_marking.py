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
