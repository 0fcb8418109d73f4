"""Tests of the fake OpenFlow 1.3 switch that the controller's unit tests rely on."""
from __future__ import annotations

from collections import Counter

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from tests.fakeoftable import FakeNetwork, FakeSwitch, Output

V4_PACKET = {
    "eth_type": 0x0800,
    "eth_src": "02:00:00:00:00:01",
    "eth_dst": "02:00:00:00:00:02",
    "ipv4_src": "192.0.2.10",
    "ipv4_dst": "198.51.100.10",
    "ip_proto": 6,
    "tcp_src": 40000,
    "tcp_dst": 443,
}
V6_PACKET = {
    "eth_type": 0x86DD,
    "ipv6_src": "2001:db8:1::10",
    "ipv6_dst": "2001:db8:100::10",
    "ip_proto": 17,
    "udp_src": 5000,
    "udp_dst": 53,
}


def apply_actions(*actions: object) -> parser.OFPInstructionActions:
    return parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))


def write_actions(*actions: object) -> parser.OFPInstructionActions:
    return parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, list(actions))


def output(port: int) -> parser.OFPActionOutput:
    return parser.OFPActionOutput(port)


def flow(priority: int, match: dict[str, object], *instructions: object, table_id: int = 0, cookie: int = 0,
         command: int = ofp.OFPFC_ADD, **kwargs: object) -> parser.OFPFlowMod:
    return parser.OFPFlowMod(None, table_id=table_id, priority=priority, match=parser.OFPMatch(**match),
                             instructions=list(instructions), cookie=cookie, command=command, **kwargs)


def group(group_id: int, type_: int, *buckets: parser.OFPBucket, command: int = ofp.OFPGC_ADD) -> parser.OFPGroupMod:
    return parser.OFPGroupMod(None, command, type_, group_id, list(buckets))


def ports_of(outputs: list[Output]) -> list[int | str]:
    return [out.port for out in outputs]


def switch(*msgs: object, ports: dict[int, bool] | None = None) -> FakeSwitch:
    sw = FakeSwitch(1, ports if ports is not None else {p: True for p in range(1, 6)})
    sw.apply(msgs)
    return sw


# ---------------------------------------------------------------------------- matching


def test_highest_priority_wins_and_miss_drops() -> None:
    sw = switch(
        flow(10, {"eth_type": 0x0800}, apply_actions(output(2))),
        flow(20, {"eth_type": 0x0800, "ipv4_dst": "198.51.100.10"}, apply_actions(output(3))),
    )
    assert ports_of(sw.process(1, V4_PACKET)) == [3]
    assert ports_of(sw.process(1, {**V4_PACKET, "ipv4_dst": "198.51.100.11"})) == [2]
    assert sw.process(1, V6_PACKET) == []


@pytest.mark.parametrize("dst, hit", [("198.51.100.200", True), ("198.51.101.1", False)])
def test_masked_ipv4_prefix(dst: str, hit: bool) -> None:
    sw = switch(flow(10, {"eth_type": 0x0800, "ipv4_dst": ("198.51.100.0", "255.255.255.0")}, apply_actions(output(2))))
    assert ports_of(sw.process(1, {**V4_PACKET, "ipv4_dst": dst})) == ([2] if hit else [])


@pytest.mark.parametrize("dst, hit", [("2001:db8:100:ffff::1", True), ("2001:db8:101::1", False)])
def test_masked_ipv6_prefix(dst: str, hit: bool) -> None:
    sw = switch(flow(10, {"eth_type": 0x86DD, "ipv6_dst": ("2001:db8:100::", "ffff:ffff:ffff::")},
                     apply_actions(output(2))))
    assert ports_of(sw.process(1, {**V6_PACKET, "ipv6_dst": dst})) == ([2] if hit else [])


def test_masked_mac_and_in_port() -> None:
    multicast = ("01:00:00:00:00:00", "01:00:00:00:00:00")
    sw = switch(flow(10, {"in_port": 1, "eth_dst": multicast}, apply_actions(output(2))))
    assert ports_of(sw.process(1, {**V4_PACKET, "eth_dst": "33:33:00:00:00:01"})) == [2]
    assert sw.process(1, V4_PACKET) == []  # unicast
    assert sw.process(3, {**V4_PACKET, "eth_dst": "33:33:00:00:00:01"}) == []


def test_packet_lacking_a_matched_field_does_not_match() -> None:
    sw = switch(flow(10, {"eth_type": 0x0800, "ip_proto": 6, "tcp_dst": 443}, apply_actions(output(2))))
    assert sw.process(1, {k: v for k, v in V4_PACKET.items() if k != "tcp_dst"}) == []


def test_vlan_vid_uses_openflow_encoding() -> None:
    sw = switch(
        flow(10, {"vlan_vid": ofp.OFPVID_PRESENT | 100}, apply_actions(output(2))),
        flow(10, {"vlan_vid": ofp.OFPVID_NONE}, apply_actions(output(3))),
    )
    assert ports_of(sw.process(1, {**V4_PACKET, "vlan_vid": 100})) == [2]
    assert ports_of(sw.process(1, V4_PACKET)) == [3]


def test_equal_priority_overlap_raises() -> None:
    sw = switch(
        flow(10, {"eth_type": 0x0800}, apply_actions(output(2))),
        flow(10, {"eth_src": V4_PACKET["eth_src"]}, apply_actions(output(3))),
    )
    with pytest.raises(ValueError, match="priority 10"):
        sw.process(1, V4_PACKET)


@pytest.mark.parametrize("match, field", [
    ({"ipv4_dst": "198.51.100.10"}, "ipv4_dst"),
    ({"eth_type": 0x0800, "ipv6_dst": "2001:db8::1"}, "ipv6_dst"),
    ({"eth_type": 0x0800, "tcp_dst": 80}, "tcp_dst"),
    ({"eth_type": 0x0800, "ip_proto": 6, "udp_dst": 53}, "udp_dst"),
    ({"ip_proto": 6}, "ip_proto"),
    ({"eth_type": 0x0800, "arp_op": 1}, "arp_op"),
    ({"eth_type": 0x86DD, "ip_proto": 1, "icmpv4_type": 8}, "icmpv4_type"),
    ({"eth_type": 0x0800, "ip_proto": 58, "icmpv6_type": 135}, "icmpv6_type"),
    ({"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 128, "ipv6_nd_target": "2001:db8::1"}, "ipv6_nd_target"),
])
def test_prerequisite_violation_raises(match: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        switch(flow(10, match, apply_actions(output(2))))


def test_set_field_needs_prerequisites_in_match() -> None:
    with pytest.raises(ValueError, match="set_field ipv4_dst"):
        switch(flow(10, {"in_port": 1}, apply_actions(parser.OFPActionSetField(ipv4_dst="10.0.0.1"), output(2))))


# ---------------------------------------------------------------------------- instructions and actions


def test_goto_table_chain_with_metadata() -> None:
    sw = switch(
        flow(10, {"in_port": 1}, parser.OFPInstructionWriteMetadata(0x5, 0xF), parser.OFPInstructionGotoTable(1)),
        flow(10, {"metadata": (0x5, 0xF)}, parser.OFPInstructionGotoTable(3), table_id=1),
        flow(10, {"eth_type": 0x0800}, apply_actions(output(4)), table_id=3),
    )
    outputs = sw.process(1, {**V4_PACKET, "metadata": 0x30})
    assert [(o.port, o.table_id) for o in outputs] == [(4, 3)]
    assert "metadata" not in outputs[0].packet
    assert sw.process(2, V4_PACKET) == []


def test_goto_backwards_raises() -> None:
    with pytest.raises(ValueError, match="goto_table"):
        switch(flow(10, {}, parser.OFPInstructionGotoTable(2), table_id=2))


def test_set_field_then_output_shows_new_value() -> None:
    sw = switch(flow(10, {"eth_type": 0x0800}, apply_actions(
        output(2),
        parser.OFPActionSetField(eth_dst="0E:00:00:00:00:99"),
        parser.OFPActionSetField(ipv4_dst="203.0.113.7"),
        output(3),
    )))
    before, after = sw.process(1, V4_PACKET)
    assert (before.port, before.packet) == (2, V4_PACKET)
    assert after.port == 3
    assert after.packet == {**V4_PACKET, "eth_dst": "0e:00:00:00:00:99", "ipv4_dst": "203.0.113.7"}


def test_dec_ttl_decrements_and_drops_at_zero() -> None:
    sw = switch(flow(10, {"eth_type": 0x0800}, apply_actions(parser.OFPActionDecNwTtl(), output(2))))
    assert sw.process(1, V4_PACKET)[0].packet["ttl"] == 63
    assert sw.process(1, {**V4_PACKET, "ttl": 2})[0].packet["ttl"] == 1
    assert sw.process(1, {**V4_PACKET, "ttl": 1}) == []


def test_action_set_runs_at_end_in_spec_order() -> None:
    sw = switch(
        # Written output before set_field still sees the new value: the set is ordered.
        flow(10, {"eth_type": 0x0800}, write_actions(output(2), parser.OFPActionSetField(ipv4_dst="203.0.113.7")),
             parser.OFPInstructionGotoTable(1)),
        flow(10, {"eth_type": 0x0800}, write_actions(output(3)), table_id=1),
    )
    [out] = sw.process(1, V4_PACKET)
    assert (out.port, out.packet["ipv4_dst"]) == (3, "203.0.113.7")


def test_group_in_action_set_beats_output_and_clear_empties_it() -> None:
    sw = switch(
        group(7, ofp.OFPGT_INDIRECT, parser.OFPBucket(actions=[output(4)])),
        flow(10, {"in_port": 1}, write_actions(output(2), parser.OFPActionGroup(7))),
        flow(10, {"in_port": 2}, write_actions(output(3)), parser.OFPInstructionGotoTable(1)),
        flow(10, {"in_port": 2}, parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []), table_id=1),
    )
    assert ports_of(sw.process(1, V4_PACKET)) == [4]
    assert sw.process(2, V4_PACKET) == []


def test_reserved_output_ports() -> None:
    sw = switch(
        flow(10, {"in_port": 1}, apply_actions(output(ofp.OFPP_CONTROLLER), output(ofp.OFPP_IN_PORT), output(1))),
        flow(10, {"in_port": 2}, apply_actions(output(ofp.OFPP_FLOOD))),
        ports={1: True, 2: True, 3: True, 4: False},
    )
    # Output to the in_port by number is dropped, as OpenFlow requires.
    assert ports_of(sw.process(1, V4_PACKET)) == ["CONTROLLER", 1]
    assert ports_of(sw.process(2, V4_PACKET)) == [1, 3]


def test_unknown_action_and_message_raise() -> None:
    with pytest.raises(NotImplementedError):
        switch(flow(10, {}, apply_actions(parser.OFPActionCopyTtlOut())))
    with pytest.raises(NotImplementedError):
        switch(parser.OFPEchoRequest(None))


def test_barrier_and_packet_out_are_accepted() -> None:
    packet_out = parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                     actions=[output(2)], data=b"")
    sw = switch(parser.OFPBarrierRequest(None), packet_out)
    assert sw.packet_outs == [packet_out]
    assert sw.flows() == []


# ---------------------------------------------------------------------------- flow_mod commands


def test_add_with_same_match_and_priority_replaces() -> None:
    sw = switch(
        flow(10, {"eth_type": 0x0800}, apply_actions(output(2)), cookie=1),
        flow(10, {"eth_type": 0x0800}, apply_actions(output(3)), cookie=2),
    )
    [only] = sw.flows()
    assert only.cookie == 2
    assert ports_of(sw.process(1, V4_PACKET)) == [3]


def test_modify_replaces_instructions_and_keeps_cookie() -> None:
    sw = switch(
        flow(10, {"eth_type": 0x0800, "ipv4_dst": "198.51.100.10"}, apply_actions(output(2)), cookie=5),
        flow(10, {"eth_type": 0x0800}, apply_actions(output(3)), command=ofp.OFPFC_MODIFY),
    )
    [only] = sw.flows()
    assert only.cookie == 5
    assert ports_of(sw.process(1, V4_PACKET)) == [3]


def test_delete_non_strict_with_cookie_mask() -> None:
    any_out = {"out_port": ofp.OFPP_ANY, "out_group": ofp.OFPG_ANY}
    sw = switch(
        flow(10, {"eth_type": 0x0800, "ipv4_dst": "198.51.100.10"}, apply_actions(output(2)), cookie=0x1_0001),
        flow(20, {"eth_type": 0x0800, "ipv4_dst": "198.51.100.11"}, apply_actions(output(2)), cookie=0x2_0001),
        flow(30, {"eth_type": 0x86DD}, apply_actions(output(2)), cookie=0x1_0002, table_id=1),
        flow(30, {"eth_type": 0x0800}, apply_actions(output(2)), cookie=0x1_0003, table_id=1),
        flow(0, {"eth_type": 0x0800}, cookie=0x1_0000, cookie_mask=0xF_0000, command=ofp.OFPFC_DELETE,
             table_id=ofp.OFPTT_ALL, **any_out),
    )
    assert [f.cookie for f in sw.flows()] == [0x2_0001, 0x1_0002]


def test_delete_strict_needs_priority_and_identical_match() -> None:
    any_out = {"out_port": ofp.OFPP_ANY, "out_group": ofp.OFPG_ANY}
    sw = switch(
        flow(10, {"eth_type": 0x0800}, apply_actions(output(2))),
        flow(20, {"eth_type": 0x0800}, apply_actions(output(3))),
        flow(10, {"eth_type": 0x0800, "ip_proto": 6}, apply_actions(output(4))),
        flow(10, {"eth_type": 0x0800}, command=ofp.OFPFC_DELETE_STRICT, **any_out),
    )
    assert [(f.priority, sorted(f.match)) for f in sw.flows()] == [(20, ["eth_type"]), (10, ["eth_type", "ip_proto"])]


def test_delete_with_ryu_default_out_port_deletes_nothing() -> None:
    # OFPFlowMod defaults out_port/out_group to 0, which OVS takes as a filter.
    sw = switch(
        flow(10, {"eth_type": 0x0800}, apply_actions(output(2))),
        flow(0, {}, command=ofp.OFPFC_DELETE),
    )
    assert len(sw.flows()) == 1
    sw.apply([flow(0, {}, command=ofp.OFPFC_DELETE, out_port=2, out_group=ofp.OFPG_ANY)])
    assert sw.flows() == []


# ---------------------------------------------------------------------------- groups


def ff_group(group_id: int = 1) -> parser.OFPGroupMod:
    return group(group_id, ofp.OFPGT_FF,
                 parser.OFPBucket(watch_port=2, actions=[output(2)]),
                 parser.OFPBucket(watch_port=3, actions=[output(3)]))


def test_fast_failover_follows_port_liveness() -> None:
    sw = switch(ff_group(), flow(10, {"in_port": 1}, apply_actions(parser.OFPActionGroup(1))))
    assert ports_of(sw.process(1, V4_PACKET)) == [2]
    sw.set_port_live(2, False)
    assert ports_of(sw.process(1, V4_PACKET)) == [3]
    sw.set_port_live(3, False)
    assert sw.process(1, V4_PACKET) == []
    sw.set_port_live(2, True)
    assert ports_of(sw.process(1, V4_PACKET)) == [2]


def test_fast_failover_watch_group() -> None:
    sw = switch(
        ff_group(1),
        group(2, ofp.OFPGT_FF,
              parser.OFPBucket(watch_group=1, actions=[parser.OFPActionGroup(1)]),
              parser.OFPBucket(watch_port=4, actions=[output(4)])),
        flow(10, {"in_port": 1}, apply_actions(parser.OFPActionGroup(2))),
    )
    assert ports_of(sw.process(1, V4_PACKET)) == [2]
    sw.set_port_live(2, False)
    sw.set_port_live(3, False)
    assert ports_of(sw.process(1, V4_PACKET)) == [4]


def select_switch(weights: tuple[int, int]) -> FakeSwitch:
    return switch(
        group(1, ofp.OFPGT_SELECT,
              parser.OFPBucket(weight=weights[0], watch_port=2, actions=[output(2)]),
              parser.OFPBucket(weight=weights[1], watch_port=3, actions=[output(3)])),
        flow(10, {"in_port": 1}, apply_actions(parser.OFPActionGroup(1))),
    )


def test_select_group_keeps_a_flow_on_one_bucket() -> None:
    sw = select_switch((1, 1))
    first = ports_of(sw.process(1, V4_PACKET))
    assert first in ([2], [3])
    assert all(ports_of(sw.process(1, V4_PACKET)) == first for _ in range(20))
    chosen, other = (2, 3) if first == [2] else (3, 2)
    sw.set_port_live(chosen, False)  # a dead watch_port takes its bucket out of the choice
    assert ports_of(sw.process(1, V4_PACKET)) == [other]


def test_select_group_spreads_flows_by_weight() -> None:
    sw = select_switch((3, 1))
    counts = Counter(
        port for src in range(200) for port in ports_of(sw.process(1, {**V4_PACKET, "tcp_src": 10000 + src}))
    )
    assert sum(counts.values()) == 200
    assert 120 <= counts[2] <= 180 and counts[3] >= 20


def test_all_group_copies_and_unknown_group_drops() -> None:
    sw = switch(
        group(1, ofp.OFPGT_ALL,
              parser.OFPBucket(actions=[parser.OFPActionSetField(eth_dst="02:00:00:00:00:aa"), output(2)]),
              parser.OFPBucket(actions=[output(3)])),
        flow(10, {"in_port": 1}, apply_actions(parser.OFPActionGroup(1), output(4))),
        flow(10, {"in_port": 2}, apply_actions(parser.OFPActionGroup(99))),
    )
    outputs = sw.process(1, V4_PACKET)
    assert ports_of(outputs) == [2, 3, 4]
    assert [o.packet["eth_dst"] for o in outputs] == ["02:00:00:00:00:aa", V4_PACKET["eth_dst"], V4_PACKET["eth_dst"]]
    assert sw.process(2, V4_PACKET) == []


def test_group_mod_commands() -> None:
    sw = switch(ff_group(1), flow(10, {"in_port": 1}, apply_actions(parser.OFPActionGroup(1))))
    with pytest.raises(ValueError, match="exists"):
        sw.apply([ff_group(1)])
    with pytest.raises(ValueError, match="does not exist"):
        sw.apply([group(2, ofp.OFPGT_FF, command=ofp.OFPGC_MODIFY)])
    sw.apply([group(5, ofp.OFPGT_ALL, command=ofp.OFPGC_DELETE)])  # missing: no-op
    sw.apply([group(1, ofp.OFPGT_INDIRECT, parser.OFPBucket(actions=[output(4)]), command=ofp.OFPGC_MODIFY)])
    assert ports_of(sw.process(1, V4_PACKET)) == [4]
    # Deleting a group deletes the flows that use it.
    sw.apply([group(1, ofp.OFPGT_ALL, command=ofp.OFPGC_DELETE)])
    assert sw.groups == {} and sw.flows() == []


# ---------------------------------------------------------------------------- network


def test_network_traces_across_a_tunnel_link() -> None:
    edge = FakeSwitch(1, {1: True, 10: True})
    edge.apply([flow(10, {"in_port": 1}, apply_actions(parser.OFPActionDecNwTtl(), output(10)))])
    msp = FakeSwitch(2, {20: True, 3: True})
    msp.apply([flow(10, {"in_port": 20, "eth_type": 0x0800}, apply_actions(
        parser.OFPActionSetField(eth_src="0e:00:00:00:00:01"), output(3), output(ofp.OFPP_CONTROLLER)))])
    net = FakeNetwork()
    net.add_switch(edge)
    net.add_switch(msp)
    net.link(1, 10, 2, 20)
    result = net.trace(1, 1, V4_PACKET)
    assert [(dpid, out.port) for dpid, out in result] == [(2, 3), (2, "CONTROLLER")]
    assert result[0][1].packet == {**V4_PACKET, "eth_src": "0e:00:00:00:00:01", "ttl": 63}


def test_network_loop_raises() -> None:
    a, b = FakeSwitch(1, {1: True, 2: True}), FakeSwitch(2, {1: True})
    a.apply([flow(10, {"in_port": 1}, apply_actions(output(2))),
             flow(10, {"in_port": 2}, apply_actions(output(ofp.OFPP_IN_PORT)))])
    b.apply([flow(10, {}, apply_actions(output(ofp.OFPP_IN_PORT)))])
    net = FakeNetwork()
    net.add_switch(a)
    net.add_switch(b)
    net.link(1, 2, 2, 1)
    with pytest.raises(ValueError, match="loop"):
        net.trace(1, 1, V4_PACKET)


def test_select_group_ignores_udp_ports_as_ovs_default_selection_does() -> None:
    sw = select_switch((1, 1))
    udp = {**V4_PACKET, "ip_proto": 17}
    del udp["tcp_src"], udp["tcp_dst"]
    ports = {tuple(ports_of(sw.process(1, {**udp, "udp_src": 10000 + i, "udp_dst": 5001}))) for i in range(32)}
    assert len(ports) == 1


def multipath_switch(n_links: int) -> FakeSwitch:
    multipath = parser.NXActionMultipath(fields=3, basis=0, algorithm=2, max_link=n_links - 1, arg=0,
                                         ofs_nbits=(0 << 6) + 7, dst="reg0")
    return switch(
        flow(10, {"in_port": 1}, apply_actions(parser.OFPActionSetField(reg0=0x100), multipath),
             parser.OFPInstructionGotoTable(1)),
        *(flow(10, {"reg0": 0x100 | link}, apply_actions(output(2 + link)), table_id=1) for link in range(n_links)),
    )


def test_multipath_spreads_udp_by_5_tuple_and_keeps_each_flow_on_one_link() -> None:
    sw = multipath_switch(2)
    udp = {**V4_PACKET, "ip_proto": 17}
    del udp["tcp_src"], udp["tcp_dst"]
    flows = [{**udp, "udp_src": 10000 + i, "udp_dst": 5001} for i in range(64)]
    first = [tuple(ports_of(sw.process(1, f))) for f in flows]
    assert Counter(first).keys() == {(2,), (3,)}
    assert [tuple(ports_of(sw.process(1, f))) for f in flows] == first
    # Registers are pipeline state: they never show in the packet that leaves.
    assert "reg0" not in sw.process(1, flows[0])[0].packet
