"""Who may take an address by ARP or ND (dataplane/claims.py), on fake switches: the gateway's
and the edge's addresses never; a known host's only once it is gone; bad MACs never."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from ryu.lib.packet import arp, ethernet, icmpv6, ipv6, packet

from msp_controller.core import msp as core_msp
from msp_controller.dataplane.claims import MOVE_HOLD_S, ClaimGuard
from tests.harness import EDGE, H1_MAC, H2_MAC, HOME, UPSTREAM_MAC, Harness, arp_frame, nd_frame, udp4, udp6

H1_4, H1_6, GW4, GW6 = "198.51.100.10", "2001:db8:100::10", "198.51.100.1", "2001:db8:100::1"
SERVER4, SERVER6 = "203.0.113.10", "2001:db8:200::10"
INTRUDER_MAC, OTHER_MAC = "00:00:00:00:00:66", "00:00:00:00:00:77"
LAN1, LAN2, INTERNET = 1, 2, 1
BAD_MACS = ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01", "00:00:00:00:00:00")


def _h1_receives_at(net: Harness, config: Any, ipv6_too: bool = True) -> set[tuple[int, int, str]]:
    """Where the Internet's packets for h1 end up: {(dpid, port, destination MAC)}."""
    return _receives_at(net, config, H1_4) | (_receives_at(net, config, H1_6) if ipv6_too else set())


def _receives_at(net: Harness, config: Any, ip: str) -> set[tuple[int, int, str]]:
    edge_mac = config.edge("edge1").internet_mac
    inbound = udp6(SERVER6, ip, UPSTREAM_MAC, edge_mac) if ":" in ip else udp4(SERVER4, ip, UPSTREAM_MAC, edge_mac)
    return {(dpid, out.port, out.packet["eth_dst"]) for dpid, out in net.network.trace(EDGE, INTERNET, inbound)}


H1_HOME = {(HOME, LAN1, H1_MAC)}


def _claim4(net: Harness, port: str, mac: str, ip: str, at: float) -> list[Any]:
    """An ARP reply claiming `ip` (a gratuitous ARP, as an attacker would send)."""
    net.now = at
    return net.packet_in(HOME, port, arp_frame(arp.ARP_REPLY, mac, ip, GW4))


def _claim6(net: Harness, port: str, mac: str, ip: str, at: float) -> list[Any]:
    """An unsolicited neighbour advertisement for `ip`."""
    net.now = at
    return net.packet_in(HOME, port, nd_frame(icmpv6.ND_NEIGHBOR_ADVERT, mac, ip, ip, dst="ff02::1"))


def _asked_for(packet_outs: list[Any], port: int) -> list[str]:
    """Addresses the controller solicits out of `port` in these packet-outs."""
    asked = []
    for out in packet_outs:
        if out.actions[0].port != port:
            continue
        frame = packet.Packet(out.data)
        request, ns = frame.get_protocol(arp.arp), frame.get_protocol(icmpv6.icmpv6)
        if request is not None and request.opcode == arp.ARP_REQUEST:
            asked.append(request.dst_ip)
        elif ns is not None and ns.type_ == icmpv6.ND_NEIGHBOR_SOLICIT:
            asked.append(ns.data.dst)
    return asked


# --- the gateway's and the edge's own addresses ------------------------------------------------------

def test_a_host_cannot_take_the_gateways_addresses_and_it_is_logged_once_per_10_s(net, config, caplog):
    gateway_flows = sorted(f.cookie for f in net.switch(HOME).flows())
    with caplog.at_level(logging.WARNING, logger="msp.core"):
        for second in range(10):
            for frame in (arp_frame(arp.ARP_REPLY, INTRUDER_MAC, GW4, H1_4),
                          arp_frame(arp.ARP_REQUEST, INTRUDER_MAC, GW4, H1_4),  # "who has h1? tell the gateway"
                          nd_frame(icmpv6.ND_NEIGHBOR_ADVERT, INTRUDER_MAC, GW6, GW6, dst="ff02::1"),
                          nd_frame(icmpv6.ND_NEIGHBOR_SOLICIT, INTRUDER_MAC, GW6, H1_6)):
                net.now = 1.0 + second * 0.9
                assert net.packet_in(HOME, "mspmb-lan2", frame) == []  # not learned, not answered
    assert sorted(f.cookie for f in net.switch(HOME).flows()) == gateway_flows
    assert GW4 not in net.core.switches[HOME].neighbors and GW6 not in net.core.switches[HOME].neighbors
    assert _h1_receives_at(net, config) == H1_HOME
    gw_mac = config.homenet("home1").gateway_mac
    assert {(d, o.port) for d, o in net.network.trace(HOME, LAN1, udp4(H1_4, SERVER4, H1_MAC, gw_mac))} == \
        {(EDGE, INTERNET)}
    lines = [r.getMessage() for r in caplog.records if "an address of this box" in r.getMessage()]
    assert sorted(line.split(" claiming ")[1].split(",")[0] for line in lines) == [GW4, GW6]  # 9 s: once each
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="msp.core"):
        _claim4(net, "mspmb-lan2", INTRUDER_MAC, GW4, at=12.0)
    assert [r.getMessage() for r in caplog.records] == \
        [f"home1: ignored {INTRUDER_MAC} on port {LAN2} claiming {GW4}, an address of this box"]


def test_nobody_on_the_internet_link_can_take_the_edges_address(net, config, caplog):
    edge = config.edge("edge1")
    with caplog.at_level(logging.WARNING, logger="msp.core"):
        answers = net.packet_in(EDGE, "edge1-inet", arp_frame(arp.ARP_REQUEST, INTRUDER_MAC,
                                                              str(edge.internet_ipv4.ip), "198.18.20.1"))
    assert answers == [] and str(edge.internet_ipv4.ip) not in net.core.switches[EDGE].neighbors
    assert "an address of this box" in caplog.text
    assert _h1_receives_at(net, config) == H1_HOME


# --- a known host's address -------------------------------------------------------------------------

@pytest.mark.parametrize("claim", [_claim4, _claim6])
def test_a_second_host_cannot_take_h1s_address_within_the_hold(net, config, caplog, claim):
    h1_ip = H1_4 if claim is _claim4 else H1_6
    asked: list[str] = []
    with caplog.at_level(logging.WARNING, logger="msp.core"):
        for tenth in range(1, int(MOVE_HOLD_S * 10) - 1, 3):  # h1 was learned at 0; the hold runs to 30 s
            asked += _asked_for(claim(net, "mspmb-lan2", INTRUDER_MAC, h1_ip, at=tenth / 10), LAN1)
            assert _h1_receives_at(net, config) == H1_HOME
    assert asked and set(asked) == {h1_ip}  # the controller asks h1, out of h1's port
    assert len(asked) <= MOVE_HOLD_S + 1  # at most once a second
    refusals = [r for r in caplog.records if f"claiming {h1_ip}: " in r.getMessage()]
    assert 1 <= len(refusals) <= 3  # one line per 10 s, not one per claim


@pytest.mark.parametrize("claim", [_claim4, _claim6])
def test_a_silent_holder_loses_its_address_after_the_hold(net, config, caplog, claim):
    h1_ip = H1_4 if claim is _claim4 else H1_6
    claim(net, "mspmb-lan2", INTRUDER_MAC, h1_ip, at=5.0)  # refused, and h1 is asked: no answer
    with caplog.at_level(logging.WARNING, logger="msp.core"):
        claim(net, "mspmb-lan2", INTRUDER_MAC, h1_ip, at=MOVE_HOLD_S + 0.5)
    assert _receives_at(net, config, h1_ip) == {(HOME, LAN2, INTRUDER_MAC)}
    other = H1_6 if claim is _claim4 else H1_4
    assert _receives_at(net, config, other) == H1_HOME  # an address moves, not a host
    assert f"{h1_ip} moves from {H1_MAC} on port {LAN1} to {INTRUDER_MAC} on port {LAN2}" in caplog.text


def test_an_address_is_taken_only_after_its_holder_was_asked(net, config):
    """A holder silent for long is still asked first: a claim alone never moves an address."""
    assert _asked_for(_claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=500.0), LAN1) == [H1_4]
    assert _h1_receives_at(net, config, ipv6_too=False) == H1_HOME
    _claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=500.5)  # too soon for an answer
    assert _h1_receives_at(net, config, ipv6_too=False) == H1_HOME
    _claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=501.5)
    assert _h1_receives_at(net, config, ipv6_too=False) == {(HOME, LAN2, INTRUDER_MAC)}


def test_a_live_holder_keeps_its_address_under_a_claim_storm(net, config):
    """h1 answers whenever the controller asks it; four claims a second for two minutes change nothing."""
    gw_mac = config.homenet("home1").gateway_mac
    for step in range(1, 480):
        for ip in _asked_for(_claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=step * 0.25), LAN1):
            net.packet_in(HOME, "mspmb-lan1", arp_frame(arp.ARP_REPLY, H1_MAC, ip, GW4))
        if step % 20 == 0:
            assert _h1_receives_at(net, config, ipv6_too=False) == H1_HOME, step
    host_to_host = net.network.trace(HOME, LAN2, udp4("198.51.100.20", H1_4, H2_MAC, gw_mac))
    assert {(d, o.port, o.packet["eth_dst"]) for d, o in host_to_host} == H1_HOME


def test_two_hosts_fighting_over_a_silent_hosts_address_cannot_flip_it(net, config):
    """Two intruders claim h1's address twice a second each for 5 minutes, h1 being silent:
    it moves once, after the hold, to the first of them, which keeps it while it claims it."""
    moves, where = 0, H1_HOME
    for step in range(1, 601):
        _claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=step * 0.5)
        _claim4(net, "mspmb-lan1", OTHER_MAC, H1_4, at=step * 0.5 + 0.01)
        now = _h1_receives_at(net, config, ipv6_too=False)
        moves, where = moves + (now != where), now
    assert moves == 1 and where == {(HOME, LAN2, INTRUDER_MAC)}


def test_the_upstream_router_cannot_be_impersonated_within_the_hold(net, config):
    gw_mac = config.homenet("home1").gateway_mac
    net.now = 5.0
    net.packet_in(EDGE, "edge1-inet", arp_frame(arp.ARP_REPLY, INTRUDER_MAC, "198.18.20.1", "198.18.20.2"))
    out = net.network.trace(HOME, LAN1, udp4(H1_4, SERVER4, H1_MAC, gw_mac))
    assert [(d, o.port, o.packet["eth_dst"]) for d, o in out] == [(EDGE, INTERNET, UPSTREAM_MAC)]


# --- bad MACs ---------------------------------------------------------------------------------------

def _arp_with(eth_src: str, claimed_mac: str, ip: str) -> bytes:
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=eth_src, ethertype=0x0806))
    frame.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=claimed_mac, src_ip=ip,
                               dst_mac="00:00:00:00:00:00", dst_ip=GW4))
    frame.serialize()
    return bytes(frame.data)


def _ns_with(eth_src: str, claimed_mac: str, ip: str) -> bytes:
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(dst="33:33:ff:00:00:01", src=eth_src, ethertype=0x86DD))
    frame.add_protocol(ipv6.ipv6(src=ip, dst="ff02::1:ff00:1", nxt=58, hop_limit=255))
    frame.add_protocol(icmpv6.icmpv6(type_=icmpv6.ND_NEIGHBOR_SOLICIT, data=icmpv6.nd_neighbor(
        dst=GW6, option=icmpv6.nd_option_sla(hw_src=claimed_mac))))
    frame.serialize()
    return bytes(frame.data)


@pytest.mark.parametrize("bad", BAD_MACS)
def test_claims_with_broadcast_multicast_or_zero_macs_are_ignored(net, config, bad):
    neighbors = net.core.switches[HOME].neighbors
    for at, (ip, frames) in enumerate([
            ("198.51.100.30", (_arp_with(bad, bad, "198.51.100.30"), _arp_with(INTRUDER_MAC, bad, "198.51.100.30"),
                               _arp_with(bad, INTRUDER_MAC, "198.51.100.30"))),
            ("2001:db8:100::30", (_ns_with(bad, bad, "2001:db8:100::30"),
                                  _ns_with(INTRUDER_MAC, bad, "2001:db8:100::30"),
                                  nd_frame(icmpv6.ND_NEIGHBOR_ADVERT, bad, "2001:db8:100::30", "2001:db8:100::30"))),
            (H1_4, (_arp_with(bad, bad, H1_4), _arp_with(INTRUDER_MAC, bad, H1_4))),
            (H1_6, (_ns_with(bad, bad, H1_6), _ns_with(INTRUDER_MAC, bad, H1_6)))]):
        for index, frame in enumerate(frames):
            net.now = 100.0 + at * 10 + index * 2  # h1 long silent: only the MAC can stop these
            assert net.packet_in(HOME, "mspmb-lan2", frame) == [], (ip, index)  # nor answered
        if ip not in (H1_4, H1_6):
            assert ip not in neighbors
    assert _h1_receives_at(net, config) == H1_HOME


# --- bounded memory ---------------------------------------------------------------------------------

def test_claim_state_stays_bounded_under_100000_distinct_claims():
    guard = ClaimGuard(capacity=1024)
    notes = 0
    for index in range(100_000):
        now = index * 0.001
        ip = f"2001:db8:100::{index:x}"
        guard.judge(ip, "00:00:00:00:00:10", 1, None, now)  # a new address each time: taken
        verdict = guard.judge(ip, f"02:00:00:{index >> 16 & 0xff:02x}:{index >> 8 & 0xff:02x}:{index & 0xff:02x}",
                              2, ("00:00:00:00:00:10", 1), now)  # and at once fought over
        assert not verdict.accepted
        notes += verdict.note is not None
        guard.own_address(f"198.51.100.{index % 256}", "00:00:00:00:00:66", 2, now)
        assert guard.tracked <= 2 * 1024
    # One line per address per 10 s, and never more than the capacity's worth in 10 s.
    assert notes <= 1024 * (100_000 * 0.001 / 10 + 1)


def test_a_claim_flood_through_the_controller_keeps_its_claim_state_bounded(net, monkeypatch):
    monkeypatch.setattr(core_msp, "MAX_NEIGHBORS", 40)
    net.core.claims.clear()  # rebuilt at the new size
    for index in range(2000):
        _claim6(net, "mspmb-lan2", INTRUDER_MAC, f"2001:db8:100::1:{index:x}", at=1.0 + index * 0.001)
        _claim6(net, "mspmb-lan1", OTHER_MAC, f"2001:db8:100::1:{index:x}", at=1.0 + index * 0.001)
    assert net.core.claims[HOME].tracked <= 2 * 2 * 40
    assert len(net.core.switches[HOME].neighbors) <= 40


def test_removing_a_homenet_forgets_its_claims(net):
    _claim4(net, "mspmb-lan2", INTRUDER_MAC, H1_4, at=1.0)
    assert HOME in net.core.claims
    net.apply(net.core.remove_homenet("home1", net.now))
    assert HOME not in net.core.claims
