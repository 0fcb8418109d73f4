"""BCP 38 both ways, on fake switches: no homenet's addresses enter from the Internet, and a
homenet sends only from its own prefixes (its hosts at the MSPMB, its tunnels at the edge)."""
from __future__ import annotations

from typing import Any

import pytest

from msp_controller.core import PortState
from msp_controller.dataplane.flows.edge import PRIO_BCP38
from msp_controller.model.config import MspConfig, parse_homenet
from tests.fakeoftable import FakeSwitch
from tests.harness import (
    EDGE,
    EDGE2,
    H1_MAC,
    HOME,
    PORTS,
    UPSTREAM2_MAC,
    UPSTREAM_MAC,
    Harness,
    arp_frame,
    link_tunnels,
    udp4,
    udp6,
    via_tunnel,
)
from tests.unit.test_runtime_homenets import HOME2, HOME2_BOXES, home2_body, two_homenet_ports

H1_4, H1_6 = "198.51.100.10", "2001:db8:100::10"
SPOOF4, SPOOF6 = "198.51.100.77", "2001:db8:100::77"  # inside home1's prefixes
FOREIGN4, FOREIGN6 = "203.0.113.10", "2001:db8:200::10"
H2_HOST, H2_MAC, H2_SPOOF = "203.0.113.130", "00:00:00:00:02:10", "203.0.113.200"  # home2: 203.0.113.128/25
LAN1, INTERNET, TUNNEL_A = 1, 1, 11
EDGES = ((EDGE, UPSTREAM_MAC, "edge1"), (EDGE2, UPSTREAM2_MAC, "edge2"))


def _from_internet(net: Harness, edge_dpid: int, packet: Any) -> list[tuple[int, int]]:
    return [(dpid, out.port) for dpid, out in net.network.trace(edge_dpid, INTERNET, packet)]


def _inbound(config: MspConfig, edge: str, upstream_mac: str, src: str, dst: str) -> dict[str, Any]:
    make = udp6 if ":" in src else udp4
    return make(src, dst, upstream_mac, config.edge(edge).internet_mac)


@pytest.mark.parametrize(("src", "dst"), [(SPOOF4, H1_4), (SPOOF6, H1_6), (H1_4, H1_4)])
def test_internet_packets_from_the_homenets_own_prefixes_are_dropped_at_every_edge(net, config, src, dst):
    for edge_dpid, upstream_mac, edge in EDGES:
        packet = _inbound(config, edge, upstream_mac, src, dst)
        assert net.switch(edge_dpid).process(INTERNET, packet) == [], edge  # at the edge, not later
        assert _from_internet(net, edge_dpid, packet) == []


@pytest.mark.parametrize(("src", "dst"), [(FOREIGN4, H1_4), (FOREIGN6, H1_6)])
def test_internet_packets_from_foreign_sources_are_delivered(net, config, src, dst):
    for edge_dpid, upstream_mac, edge in EDGES:
        assert _from_internet(net, edge_dpid, _inbound(config, edge, upstream_mac, src, dst)) == \
            [(HOME, LAN1)], edge


def test_the_drop_follows_the_internet_port_when_its_number_changes(net, config):
    """The Internet port comes back under another number: the edge admits it there at once,
    so the homenet's drops must move with it (they are part of the homenet's part)."""
    net.apply(net.core.port_status(EDGE, "edge1-inet", None, net.now))
    net.ports[EDGE]["edge1-inet"] = 7
    net.switch(EDGE).set_port_live(7, True)
    net.apply(net.core.port_status(EDGE, "edge1-inet", PortState(7, True), net.now))
    spoofed, foreign = (_inbound(config, "edge1", UPSTREAM_MAC, src, H1_4) for src in (SPOOF4, FOREIGN4))
    assert net.network.trace(EDGE, 7, spoofed) == []
    assert [(dpid, out.port) for dpid, out in net.network.trace(EDGE, 7, foreign)] == [(HOME, LAN1)]
    assert net.switch(EDGE).process(INTERNET, foreign) == []  # the old number admits nothing now


def test_a_host_cannot_send_from_an_address_outside_its_homenet(net, config):
    gw = config.homenet("home1").gateway_mac
    for src in ("192.0.2.66", H2_HOST, "2001:db8:999::1"):  # anywhere, another homenet's, IPv6
        packet = (udp6 if ":" in src else udp4)(src, FOREIGN4 if ":" not in src else FOREIGN6, H1_MAC, gw)
        assert net.switch(HOME).process(LAN1, packet) == [], src
    assert net.switch(HOME).process(LAN1, udp4(H1_4, FOREIGN4, H1_MAC, gw)) != []


def test_a_homenets_tunnel_carries_only_its_own_sources_at_the_edge(net):
    """Even a compromised MSPMB cannot send another network's addresses into the Internet."""
    macs = ("02:00:00:00:00:01", "02:00:00:00:00:02")
    for src in ("192.0.2.66", H2_HOST):
        assert net.switch(EDGE).process(TUNNEL_A, via_tunnel(net.config, udp4(src, FOREIGN4, *macs))) == [], src
    assert net.switch(EDGE).process(TUNNEL_A, via_tunnel(net.config, udp6("2001:db8:999::1", FOREIGN6, *macs))) == []
    assert net.switch(EDGE).process(TUNNEL_A, via_tunnel(net.config, udp4(SPOOF4, FOREIGN4, *macs))) != []


# --- a homenet created at run time ----------------------------------------------------------------

@pytest.fixture
def two(config: MspConfig, reference_data: dict[str, Any]) -> Harness:
    """home1 as in `net`; home2 created at run time, its boxes connected, its host learned."""
    harness = Harness(config, ports=two_homenet_ports())
    for dpid in HOME2_BOXES:
        harness.network.switches.pop(dpid, None)
        harness.network.add_switch(FakeSwitch(dpid, {n: True for n in harness.ports[dpid].values()}))
    link_tunnels(harness.network, config, HOME2, parse_homenet(home2_body(reference_data), config))
    for dpid in PORTS:
        harness.connect(dpid)
    harness.learn_hosts_and_upstream()
    home2 = parse_homenet(home2_body(reference_data), config)
    harness.apply(harness.core.add_homenet(home2, harness.now))
    for dpid in HOME2_BOXES:
        harness.connect(dpid)
    harness.packet_in(HOME2, "mspmb-lan1", arp_frame(1, H2_MAC, H2_HOST, "203.0.113.129"))
    return harness


def test_a_homenet_created_at_run_time_is_protected_too(two, config):
    assert _from_internet(two, EDGE, _inbound(config, "edge1", UPSTREAM_MAC, FOREIGN4, H2_HOST)) == \
        [(HOME2, LAN1)]
    for edge_dpid, upstream_mac, edge in EDGES:
        for dst in (H2_HOST, H1_4):  # its addresses are refused whatever the destination
            assert _from_internet(two, edge_dpid, _inbound(config, edge, upstream_mac, H2_SPOOF, dst)) == []
        # and home1 keeps its own protection
        assert _from_internet(two, edge_dpid, _inbound(config, edge, upstream_mac, SPOOF4, H2_HOST)) == []


def test_homenet_to_homenet_through_the_edge_still_works(two, config):
    """The drops are on the Internet port only: home1 reaches home2 by their tunnels."""
    gw = config.homenet("home1").gateway_mac
    assert [(dpid, out.port) for dpid, out in two.network.trace(HOME, LAN1, udp4(H1_4, H2_HOST, H1_MAC, gw))] == \
        [(HOME2, LAN1)]


def test_creating_and_removing_a_homenet_touches_only_its_own_drops(config, reference_data, two):
    def drops(dpid: int) -> set[int]:
        return {f.cookie for f in two.switch(dpid).flows(0) if f.priority == PRIO_BCP38}

    at_start = {dpid: drops(dpid) for dpid in (EDGE, EDGE2)}
    two.apply(two.core.remove_homenet("home2", two.now))
    for dpid in (EDGE, EDGE2):
        left = drops(dpid)
        assert left < at_start[dpid] and len(at_start[dpid] - left) == 1  # home2: one IPv4 prefix
    assert _from_internet(two, EDGE, _inbound(config, "edge1", UPSTREAM_MAC, SPOOF4, H1_4)) == []
