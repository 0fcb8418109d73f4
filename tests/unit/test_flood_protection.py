"""Flood protection: every controller-bound flow passes a meter of its reason, meters survive
a controller restart without duplicates, and the tables a flood grows are bounded and age."""
from __future__ import annotations

import copy
import dataclasses

import pytest
from ryu.lib.packet import arp
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from msp_controller.core import msp as core_msp
from msp_controller.core.msp import MspCore
from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.claims import ClaimGuard
from msp_controller.dataplane.meters import PUNT_METER_IDS, Meter, PuntReason, meter_add, meter_delete, meter_modify
from msp_controller.dataplane.pipeline import MSPMB, MSPMB_DELIVER
from msp_controller.model.config import MspConfig, parse_config
from msp_controller.model.errors import FieldError
from msp_controller.model.flood import PuntRates
from tests.fakeoftable import FakeSwitch
from tests.harness import EDGE, EDGE2, H2_MAC, HOME, Harness, arp_frame

CONTROLLER_PORT = ofp.OFPP_CONTROLLER


def _controller_flows(switch: FakeSwitch) -> list:
    return [f for f in switch.flows() if f.outputs_to_port(CONTROLLER_PORT)]


def _reason(meter_id: int | None) -> PuntReason | None:
    return PuntReason(meter_id) if meter_id in {r.value for r in PuntReason} else None


def test_every_controller_bound_flow_passes_an_installed_punt_meter(net: Harness) -> None:
    seen: set[PuntReason] = set()
    for dpid, switch in net.network.switches.items():
        for flow in _controller_flows(switch):
            assert flow.meter_id in PUNT_METER_IDS, f"{dpid:x}: unmetered controller flow {flow}"
            assert flow.meter_id in switch.meters, f"{dpid:x}: meter {flow.meter_id} not installed"
            seen.add(PuntReason(flow.meter_id))
    # ARP/ND (both roles), unresolved destinations (MSPMB), probe replies (edges).
    assert {PuntReason.NEIGHBOR, PuntReason.UNRESOLVED, PuntReason.PROBE} <= seen


def test_each_punt_has_the_meter_of_its_reason(net: Harness) -> None:
    home, edge = net.switch(HOME), net.switch(EDGE)
    miss = [f for f in _controller_flows(home) if f.table_id == MSPMB_DELIVER]
    assert miss and all(_reason(f.meter_id) is PuntReason.UNRESOLVED for f in miss)
    arp_punts = [f for f in _controller_flows(home) if f.match.get("eth_type", (0,))[0] == 0x0806]
    assert arp_punts and all(_reason(f.meter_id) is PuntReason.NEIGHBOR for f in arp_punts)
    probes = [f for f in _controller_flows(edge) if "udp_dst" in f.match]
    assert probes and all(_reason(f.meter_id) is PuntReason.PROBE for f in probes)


def test_meters_drop_above_the_configured_rates(reference_data: dict) -> None:
    data = copy.deepcopy(reference_data)
    data["flood"] = {"neighbor_pps": 40, "unresolved_pps": 70}
    harness = Harness(parse_config(data))
    harness.connect_all()
    for dpid in (HOME, EDGE, EDGE2):
        meters = harness.switch(dpid).meters
        rates = {mid: (m.flags, m.bands[0].type, m.bands[0].rate, m.bands[0].burst_size) for mid, m in meters.items()}
        packets = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
        assert rates[PuntReason.NEIGHBOR.value] == (packets, ofp.OFPMBT_DROP, 40, 40)
        assert rates[PuntReason.UNRESOLVED.value] == (packets, ofp.OFPMBT_DROP, 70, 70)
        assert rates[PuntReason.PROBE.value][2] == PuntRates().probe_pps
        assert set(meters) <= set(PUNT_METER_IDS)


def _meter_mods(messages: dict) -> list:
    return [m for batch in messages.values() for m in batch if isinstance(m, parser.OFPMeterMod)]


def test_a_restarted_controller_neither_duplicates_nor_loses_meters(config: MspConfig, net: Harness) -> None:
    before = {dpid: dict(s.meters) for dpid, s in net.network.switches.items()}
    restarted = Harness(config, network=net.network)
    sent = {dpid: restarted.connect(dpid) for dpid in restarted.ports}
    assert _meter_mods({d: m.get(d, []) for d, m in sent.items()}) == []  # a fake ADD of an existing meter raises too
    assert {dpid: set(s.meters) for dpid, s in net.network.switches.items()} == \
        {dpid: set(m) for dpid, m in before.items()}


def test_reconnect_repairs_missing_changed_and_stray_meters(config: MspConfig, net: Harness) -> None:
    home = net.switch(HOME)
    neighbor, unresolved = PuntReason.NEIGHBOR.value, PuntReason.UNRESOLVED.value
    home.apply([meter_delete(neighbor),  # which also deletes the flows that use it
                meter_modify(Meter(unresolved, 5, 5)),
                meter_add(Meter(9, 1, 1))])
    assert not [f for f in _controller_flows(home) if f.meter_id == neighbor]
    messages = net.connect(HOME)[HOME]
    commands = sorted((m.command, m.meter_id) for m in messages if isinstance(m, parser.OFPMeterMod))
    assert commands == [(ofp.OFPMC_ADD, neighbor), (ofp.OFPMC_MODIFY, unresolved), (ofp.OFPMC_DELETE, 9)]
    assert set(home.meters) == {r.value for r in PuntReason}
    assert home.meters[unresolved].bands[0].rate == PuntRates().unresolved_pps
    assert [f for f in _controller_flows(home) if f.meter_id == neighbor]  # the ARP/ND punts are back


def test_the_pipeline_refuses_an_unmetered_controller_flow() -> None:
    flow = ofmsg.Flow(MSPMB_DELIVER, 0, ofmsg.match(), (ofmsg.Output(ofmsg.CONTROLLER),))
    with pytest.raises(ValueError, match="punt meter"):
        MSPMB.check(flow)
    with pytest.raises(ValueError, match="punt meter"):
        MSPMB.check(dataclasses.replace(flow, meter=16))  # a QoS meter is not a punt meter
    MSPMB.check(dataclasses.replace(flow, meter=PuntReason.UNRESOLVED.value))


def test_the_fake_switch_refuses_a_flow_whose_meter_is_missing() -> None:
    switch = FakeSwitch(1, {1: True})
    flow = ofmsg.Flow(0, 1, ofmsg.match(in_port=1), (ofmsg.Output(ofmsg.CONTROLLER),), meter=3)
    with pytest.raises(ValueError, match="meter 3 is not installed"):
        switch.apply([ofmsg.flow_add(flow)])
    switch.apply([meter_add(Meter(3, 10, 10)), ofmsg.flow_add(flow)])
    with pytest.raises(ValueError, match="already exists"):
        switch.apply([meter_add(Meter(3, 10, 10))])
    switch.apply([meter_delete(3)])
    assert switch.flows() == []


@pytest.mark.parametrize("flood, message", [
    ({"neighbor_pps": 0}, "flood.neighbor_pps"),
    ({"unresolved_pps": "lots"}, "flood.unresolved_pps"),
    ({"probe_pps": 100}, "flood.probe_pps"),
    ({"autoconf_pps": 10**9}, "flood.autoconf_pps"),
    ({"arp_pps": 10}, "flood.arp_pps"),
    ("fast", "flood"),
])
def test_bad_flood_settings_are_refused_naming_the_field(reference_data: dict, flood: object, message: str) -> None:
    data = copy.deepcopy(reference_data)
    data["flood"] = flood
    with pytest.raises(FieldError) as caught:
        parse_config(data)
    assert str(caught.value).startswith(message)


# --- tables bounded and aged -------------------------------------------------------------------


def _unresolved(net: Harness, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        frame = _udp_to(f"198.51.100.{100 + n % 100}" if n < 100 else f"2001:db8:100::{n:x}")
        net.apply(net.core.packet_in(HOME, 11, MSPMB_DELIVER, frame, net.now))


def _udp_to(dst: str) -> bytes:
    from ryu.lib.packet import ethernet, ipv4, ipv6, packet, udp
    pkt = packet.Packet()
    v6 = ":" in dst
    pkt.add_protocol(ethernet.ethernet(ethertype=0x86DD if v6 else 0x0800))
    pkt.add_protocol(ipv6.ipv6(src="2001:db8::1", dst=dst, nxt=17) if v6 else
                     ipv4.ipv4(src="203.0.113.5", dst=dst, proto=17))
    pkt.add_protocol(udp.udp(src_port=1, dst_port=2))
    pkt.serialize()
    return bytes(pkt.data)


def test_solicitation_times_age_out_after_a_flood(net: Harness) -> None:
    _unresolved(net, 300)
    solicited = net.core.switches[HOME].solicited
    assert len(solicited) == 300
    net.advance(core_msp.GATEWAY_REFRESH_S / 2)
    assert len(solicited) == 300  # still recent
    for _ in range(int(core_msp.GATEWAY_REFRESH_S / core_msp.AGEING_CHECK_S) + 2):
        net.advance(core_msp.AGEING_CHECK_S)
    assert solicited == {}


def test_claim_records_age_out() -> None:
    guard = ClaimGuard(ttl_s=100.0, log_interval_s=10.0)
    for n in range(50):
        guard.judge(f"10.0.0.{n}", "00:00:00:00:00:01", 1, None, now=float(n))
    guard.own_address("10.0.0.1", "00:00:00:00:00:02", 1, now=49.0)
    assert guard.tracked == 51
    guard.expire(now=120.0)  # records touched at t <= 20 are gone, and the log time
    assert guard.tracked == 29
    guard.expire(now=200.0)
    assert guard.tracked == 0


def test_claim_records_of_the_core_age_out(net: Harness) -> None:
    net.packet_in(HOME, "mspmb-lan2", arp_frame(arp.ARP_REQUEST, H2_MAC, "198.51.100.77", "198.51.100.1"))
    guard = net.core.claims[HOME]
    assert guard.tracked > 0
    for _ in range(int(guard.ttl_s / core_msp.AGEING_CHECK_S) + 2):
        net.advance(core_msp.AGEING_CHECK_S)
    assert guard.tracked == 0


def test_unknown_switches_are_remembered_up_to_a_bound(config: MspConfig) -> None:
    core = MspCore(config)
    for dpid in range(0x7000, 0x7000 + core_msp.MAX_STRANGERS + 50):
        core.switch_up(dpid, {}, 0.0)
    assert len(core.strangers) == core_msp.MAX_STRANGERS


def test_a_storm_of_made_up_hosts_is_learned_at_a_bounded_rate(net: Harness) -> None:
    """Each new neighbour is a flow change at the box: a host inventing addresses gets at
    most NEW_BURST, then NEW_PER_S a second, whatever rate its claims arrive at."""
    from msp_controller.dataplane import claims
    learned_before = len(net.core.switches[HOME].neighbors)
    for n in range(2000):  # 2000 claims in 2 s
        net.now += 0.001
        mac = f"02:00:00:00:{n >> 8:02x}:{n & 0xff:02x}"
        net.packet_in(HOME, "mspmb-lan2", arp_frame(arp.ARP_REQUEST, mac, f"198.51.100.{30 + n % 200}",
                                                    "198.51.100.1"))
    learned = len(net.core.switches[HOME].neighbors) - learned_before
    assert learned <= claims.NEW_BURST + 2 * claims.NEW_PER_S + 1
    assert net.core.claims[HOME].refused_new > 0
    # h1, a known host, is still answered and keeps its address.
    assert "198.51.100.10" in net.core.switches[HOME].neighbors
