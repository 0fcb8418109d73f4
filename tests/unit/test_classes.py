"""Traffic classes on the fake flow tables: policy in, packets out by the right tunnel."""
from __future__ import annotations

import pytest

from msp_controller.dataplane.probe_packet import build_probe
from msp_controller.model.errors import FieldError
from tests.harness import EDGE, EDGE2, H1_MAC, HOME, UPSTREAM_MAC, Harness, udp4, udp6, via_tunnel

SERVER4, SERVER6, H1_4, H1_6 = "203.0.113.10", "2001:db8:200::10", "198.51.100.10", "2001:db8:100::10"
TUNNEL_A, TUNNEL_B, TUNNEL_A2, TUNNEL_B2 = 11, 12, 13, 14
EDGE_TUNNEL_A, EDGE_TUNNEL_B = 11, 12
FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}
FAILOVER_BA = {"mode": "failover", "order": ["ispB", "ispA"]}
DEFAULT = {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}
VOICE = {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
         "egress": FAILOVER_BA, "ingress": FAILOVER_BA}


def _put(net: Harness, policy: dict) -> None:
    _, messages = net.core.set_policy("home1", policy, net.now)
    net.apply(messages)


def _egress_port(net: Harness, packet: dict) -> int:
    outputs = net.switch(HOME).process(1, packet)
    assert len(outputs) == 1, outputs
    return outputs[0].port


def _ingress_port(net: Harness, packet: dict, edge: int = EDGE) -> list:
    return [o.port for o in net.switch(edge).process(1, packet)]


def test_voice_leaves_by_b_while_web_leaves_by_a(net, config):
    _put(net, {"classes": [VOICE], "default": DEFAULT})
    gw = config.homenet("home1").gateway_mac
    assert _egress_port(net, udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000)) == TUNNEL_B
    assert _egress_port(net, udp6(H1_6, SERVER6, H1_MAC, gw, dport=20000)) == TUNNEL_B
    web = dict(udp4(H1_4, SERVER4, H1_MAC, gw), ip_proto=6, tcp_src=40000, tcp_dst=443)
    del web["udp_src"], web["udp_dst"]
    assert _egress_port(net, web) == TUNNEL_A
    assert _egress_port(net, udp4(H1_4, SERVER4, H1_MAC, gw, dport=16383)) == TUNNEL_A  # just outside the range


def test_voice_enters_by_b_while_the_rest_enters_by_a(net, config):
    _put(net, {"classes": [VOICE], "default": DEFAULT})
    edge_mac = config.edge("edge1").internet_mac
    # On the way in the remote port is the source port.
    assert _ingress_port(net, udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=20000, dport=5000)) == [EDGE_TUNNEL_B]
    assert _ingress_port(net, udp4(SERVER4, H1_4, UPSTREAM_MAC, edge_mac, sport=5000, dport=20000)) == [EDGE_TUNNEL_A]
    # A class never widens what the edge forwards: not for the homenet, dropped.
    assert _ingress_port(net, udp4(SERVER4, "192.0.2.10", UPSTREAM_MAC, edge_mac, sport=20000)) == []


def test_voice_fails_over_to_a_when_b_dies(net, config):
    _put(net, {"classes": [VOICE], "default": DEFAULT})
    gw = config.homenet("home1").gateway_mac
    net.switch(HOME).set_port_live(TUNNEL_B, False)
    assert _egress_port(net, udp4(H1_4, SERVER4, H1_MAC, gw, dport=20000)) == TUNNEL_A


def test_balance_spreads_flows_and_keeps_each_on_one_path(net, config):
    _put(net, {"classes": [{"name": "bulk", "match": {"protocol": "udp", "dst_ports": [9000]},
                            "egress": {"mode": "balance", "weights": {"ispA": 1, "ispB": 1}},
                            "ingress": FAILOVER_AB}], "default": DEFAULT})
    gw = config.homenet("home1").gateway_mac
    flows = [udp4(H1_4, SERVER4, H1_MAC, gw, sport=10000 + i, dport=9000) for i in range(100)]
    first = [_egress_port(net, f) for f in flows]
    assert {TUNNEL_A, TUNNEL_B} <= set(first) and 20 < first.count(TUNNEL_A) < 80
    assert [_egress_port(net, f) for f in flows] == first  # stable
    net.switch(HOME).set_port_live(TUNNEL_B, False)
    after = [_egress_port(net, f) for f in flows]
    # Flows on the live path stay put; the others move.
    assert all(a == TUNNEL_A for f, a in zip(first, after, strict=True) if f == TUNNEL_A)
    assert set(after) == {TUNNEL_A}


def test_bad_policy_changes_nothing(net, config):
    _put(net, {"classes": [VOICE], "default": DEFAULT})
    before = [(f.table_id, f.priority, f.cookie) for f in net.switch(HOME).flows()]
    with pytest.raises(FieldError):
        net.core.set_policy("home1", {"classes": [dict(VOICE, egress={"mode": "failover", "order": ["ispZ"]})],
                                      "default": DEFAULT}, net.now)
    assert net.core.homenets["home1"].policy.classes[0].name == "voice"
    assert [(f.table_id, f.priority, f.cookie) for f in net.switch(HOME).flows()] == before


def _probe_round(net: Harness, lose: set[str]) -> None:
    """One probe per path: reflected at the MSPMB, back to the controller unless lost."""
    messages = net.core.probe_tick(net.now)
    net.apply({dpid: [m for m in batch if not hasattr(m, "data")] for dpid, batch in messages.items()})
    for dpid, batch in messages.items():
        for message in batch:
            if not hasattr(message, "data") or dpid not in (EDGE, EDGE2):
                continue
            port = message.actions[-1].port
            uplink = {EDGE_TUNNEL_A: "ispA", EDGE_TUNNEL_B: "ispB"}[port]
            if uplink not in lose:
                net.apply(net.core.packet_in(dpid, port, 0, bytes(message.data), net.now + 0.002, tunnel_id=1))


def test_probes_measure_and_sla_class_leaves_a_lossy_path(net, config):
    game = {"name": "gaming", "match": {"protocol": "udp", "dst_ports": ["27000-27100"]},
            "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 2},
            "ingress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 2}}
    _put(net, {"classes": [game], "default": DEFAULT})
    gw = config.homenet("home1").gateway_mac
    packet = udp4(H1_4, SERVER4, H1_MAC, gw, dport=27010)
    for _ in range(30):  # 3 s of clean probes
        net.now += 0.1
        _probe_round(net, lose=set())
    path_a = next(p for p in net.core.plan("home1").paths if p.uplink == "ispA" and p.edge == "edge1")
    stats = net.core.path_stats(path_a, net.now)
    assert stats.loss_pct == 0 and stats.rtt_ms == pytest.approx(2.0, abs=0.1)
    assert _egress_port(net, packet) == TUNNEL_A
    for _ in range(40):  # ISP A loses every probe for 4 s
        net.now += 0.1
        _probe_round(net, lose={"ispA"})
    assert _egress_port(net, packet) == TUNNEL_B  # the sla class moved...
    assert _egress_port(net, udp4(H1_4, SERVER4, H1_MAC, gw, dport=80)) == TUNNEL_A  # ...the default did not
    for _ in range(100):  # healthy again: back once the window is clean and recover_s has passed
        net.now += 0.1
        _probe_round(net, lose=set())
    assert _egress_port(net, packet) == TUNNEL_A


def test_probe_frames_are_reflected_by_the_mspmb(net, config):
    frame = build_probe(0, 1, 0, config.edge("edge1").internet_mac, config.homenet("home1").gateway_mac,
                        "198.18.20.2", "198.51.100.1")
    del frame
    probe = {"eth_type": 0x0800, "ipv4_src": "198.18.20.2", "ipv4_dst": "198.51.100.1", "ip_proto": 17,
             "udp_src": 47000, "udp_dst": 47000}
    assert [o.port for o in net.switch(HOME).process(TUNNEL_A, probe)] == ["IN_PORT"] or \
        [o.port for o in net.switch(HOME).process(TUNNEL_A, probe)] == [TUNNEL_A]
    assert [o.port for o in net.switch(EDGE).process(EDGE_TUNNEL_A, via_tunnel(config, probe))] == ["CONTROLLER"]
    # from another address on the same shared port: not the box's, not timed
    forged = {**via_tunnel(config, probe), "tun_ipv4_src": "198.18.1.99"}
    assert net.switch(EDGE).process(EDGE_TUNNEL_A, forged) == []


def test_a_probe_reply_with_another_homenets_key_is_ignored(net):
    """On the shared tunnel port, the VXLAN key says whose reply it is: home1's path does
    not count a reply that came with key 2."""
    path_a = next(p for p in net.core.plan("home1").paths if p.uplink == "ispA" and p.edge == "edge1")
    for _ in range(20):
        net.now += 0.05
        for message in net.core.probe_tick(net.now).get(EDGE, []):
            if hasattr(message, "data") and message.actions[-1].port == EDGE_TUNNEL_A:
                ignored = net.core.ignored_packets
                net.apply(net.core.packet_in(EDGE, EDGE_TUNNEL_A, 0, bytes(message.data), net.now + 0.002,
                                             tunnel_id=2))
                assert net.core.ignored_packets == ignored + 1
    net.now += 2.0
    assert net.core.path_stats(path_a, net.now).loss_pct == 100.0


def test_edge1_lost_moves_both_directions_to_edge2(net, config):
    gw = config.homenet("home1").gateway_mac
    net.apply(net.core.switch_down(EDGE, net.now))
    assert _egress_port(net, udp4(H1_4, SERVER4, H1_MAC, gw)) == TUNNEL_A2
    edge2_mac = config.edge("edge2").internet_mac
    results = net.network.trace(EDGE2, 1, udp4(SERVER4, H1_4, UPSTREAM_MAC, edge2_mac))
    assert [(dpid, out.port) for dpid, out in results] == [(HOME, 1)]


def test_a_probe_reply_counts_only_on_its_own_paths_port(net):
    """A box can answer only through its own tunnels: a reply for path A that comes back on
    path B's port (a forgery, or a misrouted packet) is not taken as A's health."""
    path_a = next(p for p in net.core.plan("home1").paths if p.uplink == "ispA" and p.edge == "edge1")
    for _ in range(20):
        net.now += 0.05
        messages = net.core.probe_tick(net.now)
        for message in messages.get(EDGE, []):
            if hasattr(message, "data") and message.actions[-1].port == EDGE_TUNNEL_A:
                ignored = net.core.ignored_packets
                net.apply(net.core.packet_in(EDGE, EDGE_TUNNEL_B, 0, bytes(message.data), net.now + 0.002, tunnel_id=1))
                assert net.core.ignored_packets == ignored + 1
    net.now += 2.0
    stats = net.core.path_stats(path_a, net.now)
    assert stats.rtt_ms is None and stats.loss_pct == 100.0
