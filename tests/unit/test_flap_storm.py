"""An ISP that keeps failing, through the core onto fake switches: flap damping keeps the
traffic on the other ISP while the flapping one is up, at both ends, until it has been
stable; failing over away from any path stays immediate."""
from __future__ import annotations

import random
from typing import Any

from ryu.ofproto import ofproto_v1_3_parser as parser

from msp_controller.model.policy import DEFAULT_DAMPING_MAX_HOLD_S, DEFAULT_DAMPING_RECOVER_S
from tests.harness import EDGE, H1_MAC, HOME, UPSTREAM_MAC, Harness, udp4

SERVER4, H1_4 = "203.0.113.10", "198.51.100.10"
LAN1, INTERNET = 1, 1
TUNNEL_A, TUNNEL_B = 11, 12  # at the MSPMB: edge1 over ISP A, over ISP B (and at edge1 alike)
OTHER_TUNNELS = (12, 13, 14)  # at the MSPMB: every tunnel but edge1 over ISP A
FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}


def egress(net: Harness, config: Any) -> int:
    """The MSPMB's tunnel port for h1 -> server."""
    outputs = net.switch(HOME).process(LAN1, udp4(H1_4, SERVER4, H1_MAC, config.homenet("home1").gateway_mac))
    assert len(outputs) == 1, outputs
    return outputs[0].port


def inbound(net: Harness, config: Any) -> list[int]:
    """edge1's tunnel port(s) for server -> h1."""
    packet = udp4(SERVER4, H1_4, UPSTREAM_MAC, config.edge("edge1").internet_mac)
    return [out.port for out in net.switch(EDGE).process(INTERNET, packet)]


def count(messages: dict[int, list[Any]], kind: type) -> int:
    return sum(isinstance(m, kind) for batch in messages.values() for m in batch)


def test_a_flapping_isp_costs_one_failover_then_waits_until_it_is_stable(net, config):
    """ISP A's tunnel to edge1 goes down and up 50 times in about 60 s (0.6 +- 0.2 s each half)."""
    rng = random.Random(60)
    net.advance(10.0)
    assert egress(net, config) == TUNNEL_A and inbound(net, config) == [TUNNEL_A]
    start = net.now
    for cycle in range(50):
        down = net.set_live(HOME, "edge1-ispA", False)
        assert egress(net, config) == TUNNEL_B and inbound(net, config) == [TUNNEL_B]
        net.advance(rng.uniform(0.4, 0.8))
        up = net.set_live(HOME, "edge1-ispA", True)
        # Up again, yet damped: the data plane does not pull the traffic back, at either end.
        assert egress(net, config) == TUNNEL_B and inbound(net, config) == [TUNNEL_B], cycle
        if cycle:
            # Once damped, the flapping path changes no group and no flow at either end.
            for event in (down, up):
                assert count(event, parser.OFPGroupMod) == 0 and count(event, parser.OFPFlowMod) == 0
        restored = net.now
        net.advance(rng.uniform(0.4, 0.8))
    assert 50 <= net.now - start <= 70
    assert len(net.core.damper) == 4  # one entry per path of the homenet, whatever the events
    assert len(net.core._damping_due) <= 2  # no wake-up piles up per event

    while net.now < restored + DEFAULT_DAMPING_MAX_HOLD_S - 1.0:
        net.advance(1.0)  # the controller's tick, every second
        assert egress(net, config) == TUNNEL_B
    net.advance(1.0)
    assert egress(net, config) == TUNNEL_A and inbound(net, config) == [TUNNEL_A]


def test_a_damped_path_is_still_the_last_resort_in_the_data_plane(net, config):
    net.set_live(HOME, "edge1-ispA", False)
    net.advance(0.6)
    net.set_live(HOME, "edge1-ispA", True)
    assert egress(net, config) == TUNNEL_B
    for port in OTHER_TUNNELS:  # BFD declares every other tunnel down, before the controller hears
        net.switch(HOME).set_port_live(port, False)
    assert egress(net, config) == TUNNEL_A


def test_a_single_failure_returns_after_recover_s(net, config):
    net.set_live(HOME, "edge1-ispA", False)
    net.advance(1.5)
    net.set_live(HOME, "edge1-ispA", True)
    net.advance(DEFAULT_DAMPING_RECOVER_S - 0.1)
    assert egress(net, config) == TUNNEL_B  # BFD's fast timers may not apply yet
    net.advance(0.1)
    assert egress(net, config) == TUNNEL_A and inbound(net, config) == [TUNNEL_A]


def test_damping_off_by_policy_fails_back_at_once(net, config):
    net.apply(net.core.set_policy("home1", {"default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB},
                                            "damping": {"max_hold_s": 0}}, net.now)[1])
    net.set_live(HOME, "edge1-ispA", False)
    net.set_live(HOME, "edge1-ispA", True)
    assert egress(net, config) == TUNNEL_A and inbound(net, config) == [TUNNEL_A]


def test_a_policy_change_that_shortens_the_wait_takes_effect_at_the_next_tick(net, config):
    for _ in range(3):
        net.set_live(HOME, "edge1-ispA", False)
        net.advance(0.6)
        net.set_live(HOME, "edge1-ispA", True)
        net.advance(0.6)
    net.apply(net.core.set_policy("home1", {"default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB},
                                            "damping": {"recover_s": 1, "max_hold_s": 1}}, net.now)[1])
    assert egress(net, config) == TUNNEL_B
    net.advance(1.0)
    assert egress(net, config) == TUNNEL_A


def test_a_balanced_class_keeps_a_damped_paths_flows_on_the_others(net, config):
    balance = {"mode": "balance", "weights": {"ispA": 1, "ispB": 1}}
    net.apply(net.core.set_policy("home1", {"default": {"egress": balance, "ingress": FAILOVER_AB}}, net.now)[1])
    gateway = config.homenet("home1").gateway_mac
    flows = [udp4(H1_4, SERVER4, H1_MAC, gateway, sport=4000 + i) for i in range(32)]

    def ports() -> list[int]:
        return [out.port for flow in flows for out in net.switch(HOME).process(LAN1, flow)]

    before = ports()
    assert set(before) == {TUNNEL_A, TUNNEL_B}
    net.set_live(HOME, "edge1-ispB", False)
    net.advance(0.6)
    net.set_live(HOME, "edge1-ispB", True)
    assert set(ports()) == {TUNNEL_A}  # up, but damped: its flows stay where they went
    net.advance(DEFAULT_DAMPING_RECOVER_S)
    assert ports() == before  # each flow back on its own path
