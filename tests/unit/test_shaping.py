"""The tc commands that shape each ISP's traffic just below its rates, classes inside."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from msp_controller.dataplane.shaping import (
    MAX_SHAPED_HOMENET_ID,
    SHAPE_FRACTION,
    SMALL_MINOR,
    clear_commands,
    edge_base_shaping,
    edge_homenet_major,
    edge_homenet_shaping,
    edge_homenet_unshaping,
    edge_homenet_update,
    leaf_minors,
    mspmb_shaping,
    priority_minors,
    queues,
)
from msp_controller.model.policy import parse_policy

FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}
POLICY: dict[str, Any] = {
    "classes": [
        {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
         "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 46, "priority": "realtime"}},
        {"name": "video", "match": {"protocol": "tcp", "dst_ports": [1935]},
         "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 34, "priority": 30}},
    ],
    "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 0, "priority": 10}},
    "rates": {"ispA": {"down_kbps": 100000, "up_kbps": 20000}, "ispB": {"down_kbps": 50000, "up_kbps": 5000}},
}


@pytest.fixture
def home(config):
    return config.homenet("home1")


@pytest.fixture
def policy(home):
    return parse_policy(copy.deepcopy(POLICY), home)


def _classes(commands: list[list[str]]) -> dict[str, dict[str, str]]:
    """classid -> its HTB options (rate, ceil, prio...)."""
    found = {}
    for c in commands:
        if c[:2] == ["class", "replace"]:
            options = c[c.index("htb") + 1:]
            found[c[c.index("classid") + 1]] = dict(zip(options[::2], options[1::2], strict=True))
    return found


def _flowid(commands: list[list[str]], *matches: str, parent: str = "1:") -> str:
    """The class a packet with these u32 matches goes to among one qdisc's filters (the
    lowest filter prio wins)."""
    candidates = []
    for c in commands:
        if c[:2] == ["filter", "add"] and c[c.index("parent") + 1] == parent:
            text = " ".join(c)
            if all(m in text for m in matches):
                candidates.append((int(c[c.index("prio") + 1]), c[c.index("flowid") + 1]))
    assert candidates, matches
    return min(candidates)[1]


def _edge_class(commands: list[list[str]], vni: int, src: str, *matches: str) -> str:
    """Where the edge puts a tunnel packet: the root's hash filter for (key, outer source)
    picks the homenet, its qdisc's filter for the outer source picks the ISP's class, whose
    own filters pick the leaf (the last of them catches everything)."""
    key = f"0x{vni << 8:08x} 0xffffff00 at 32"
    homenet = [c[c.index("flowid") + 1] for c in commands
               if c[:2] == ["filter", "replace"] and key in " ".join(c) and f"src {src}/32" in " ".join(c)]
    assert len(homenet) == 1, (vni, src)
    major = homenet[0].split(":")[1]
    pair = _flowid(commands, f"src {src}/32", parent=f"{major}:")
    try:
        return _flowid(commands, *matches, parent=pair)
    except AssertionError:
        return _flowid(commands, "match u32 0 0", parent=pair)


def test_queues_follow_the_classes(policy):
    found = queues(policy)
    assert [(q.dscps, q.realtime, q.weight) for q in found] == [((46,), True, 1), ((34,), False, 30), ((), False, 10)]


def test_upstream_is_shaped_below_each_isps_rate_with_voice_first(home, policy):
    for uplink, up in (("ispA", 20000), ("ispB", 5000)):
        commands = mspmb_shaping(policy, home.uplink(uplink))
        assert all(c[c.index("dev") + 1] == home.uplink(uplink).port for c in commands)
        classes = _classes(commands)
        assert classes["1:1"]["ceil"] == f"{int(up * SHAPE_FRACTION)}kbit"
        voice = _flowid(commands, "tos 0xb8 0xfc")
        video = _flowid(commands, "tos 0x88 0xfc")
        assert classes[voice]["prio"] == "0" and classes[video]["prio"] == "1"
        # Every class may use the whole shaped rate, and none more; small packets (ACKs) a
        # quarter, BFD's queue 1 Mbit/s.
        small = _flowid(commands, "match u16 0x0000 0xff80 at 2")
        bfd = _flowid(commands, "u16 3784 0xffff at 72")
        assert {c["ceil"] for k, c in classes.items() if k not in (small, bfd)} == {f"{int(up * SHAPE_FRACTION)}kbit"}
        assert classes[small]["ceil"] == f"{int(up * SHAPE_FRACTION / 4)}kbit"
        assert classes[bfd]["ceil"] == "1024kbit"
        # Unmarked traffic falls to the default leaf (the root's default).
        assert commands[0][-1] not in (voice.split(":")[1], video.split(":")[1])


def test_no_rate_no_shaping(home, policy, config):
    unshaped = parse_policy({**copy.deepcopy(POLICY), "rates": {"ispA": {"down_kbps": 1000}}}, home)
    assert mspmb_shaping(unshaped, home.uplink("ispA")) == []
    only_a = edge_homenet_shaping(config.edge("edge1"), home, unshaped)
    assert all("10.12/32" not in " ".join(c) for c in only_a)  # ISP B's slot: nothing
    assert clear_commands("x") == [["qdisc", "del", "dev", "x", "root"]]


def test_downstream_is_shaped_per_homenet_and_isp(config, home, policy):
    edge = config.edge("edge1")
    commands = edge_base_shaping(edge.underlay_port) + edge_homenet_shaping(edge, home, policy)
    assert all(c[c.index("dev") + 1] == "edge1-up" for c in commands)
    classes = _classes(commands)
    slot_a, slot_b = str(edge.tunnel_ip(0)), str(edge.tunnel_ip(1))
    voice_a = _edge_class(commands, home.id, slot_a, "tos 0xb8 0xfc")
    voice_b = _edge_class(commands, home.id, slot_b, "tos 0xb8 0xfc")
    bulk_b = _edge_class(commands, home.id, slot_b, "no such match")
    assert voice_a != voice_b and classes[voice_b]["prio"] == "0" and classes[bulk_b]["prio"] == "1"
    # After a failover to ISP B, its traffic is shaped to ISP B's down rate.
    assert classes[voice_b]["ceil"] == classes[bulk_b]["ceil"] == f"{int(50000 * SHAPE_FRACTION)}kbit"
    assert classes[voice_a]["ceil"] == f"{int(100000 * SHAPE_FRACTION)}kbit"
    # Everything else leaves unshaped (the root's default class).
    assert commands[0][-1] == "ffff" and "1:ffff" in classes


def test_bfd_goes_first_at_both_ends(config, home, policy):
    """BFD waiting behind bulk for three intervals would be a false failover. Only packets
    from and to Open vSwitch's BFD addresses (link-local) count as BFD: a host's own UDP to
    port 3784 is not (tests/integration/test_qos.py)."""
    upstream = mspmb_shaping(policy, home.uplink("ispA"))
    link_local = "u16 0xa9fe 0xffff"
    bfd = _flowid(upstream, "u16 3784 0xffff at 72", "dport 4789", f"{link_local} at 62", f"{link_local} at 66")
    assert _classes(upstream)[bfd]["prio"] == "0"
    edge = config.edge("edge1")
    downstream = edge_homenet_shaping(edge, home, policy)
    bfd = _edge_class(downstream, home.id, str(edge.tunnel_ip(0)), "u16 3784 0xffff at 72", "dport 4789")
    assert _classes(downstream)[bfd]["prio"] == "0"


def test_an_edges_homenets_take_disjoint_handles_and_each_change_touches_only_its_own(config, home, policy):
    """At 10,000 homenets: no two homenets share a qdisc, class or filter handle, and one
    homenet's commands name only its own (so a change costs the same at any scale)."""
    import dataclasses
    edge = config.edge("edge1")
    majors, handles = set(), set()
    for homenet_id in (*range(1, 10_001), MAX_SHAPED_HOMENET_ID):
        other = dataclasses.replace(home, id=homenet_id)
        commands = edge_homenet_shaping(edge, other, policy)
        mine = {c[c.index("handle") + 1] for c in commands if c[:2] == ["filter", "replace"]}
        named = {c[c.index("handle") + 1] for c in commands if c[0] == "qdisc" and "handle" in c}
        assert len(mine) == 2 and len(named) == 1 and not mine & handles and not named & majors
        # Every other qdisc is a leaf's FIFO, whose handle the kernel picks from 8000: up.
        assert all(int(h.rstrip(":"), 16) < 0x8000 for h in named)
        handles |= mine
        majors |= named
        assert {c[c.index("dev") + 1] for c in commands} == {edge.underlay_port}
        assert {c[c.index("classid") + 1].split(":")[0] for c in commands if c[0] == "class"} <= \
            {"1", named.pop().rstrip(":")}
        assert len(commands) < 60  # the same for every homenet
    assert "1:" not in majors and "ffff:" not in majors
    with pytest.raises(ValueError, match="ids 1-32766"):
        edge_homenet_major(MAX_SHAPED_HOMENET_ID + 1)


def test_a_homenets_update_removes_its_filters_before_its_class(config, home, policy):
    """A class a filter still points at cannot be deleted (EBUSY); deleting the homenet's
    class takes its qdisc, trees and FIFOs with it."""
    edge = config.edge("edge1")
    removal = edge_homenet_unshaping(edge, home)
    assert [c[:2] for c in removal] == [["filter", "del"]] * 2 + [["class", "del"]]
    update = edge_homenet_update(edge, home, policy)
    assert update[:3] == removal and update[3:] == edge_homenet_shaping(edge, home, policy)


def test_every_edge_fifo_drops_from_its_head_with_a_handle_the_kernel_picks(config, home, policy):
    """A tail drop at the edge would make its switch drop the rest of a send batch, which
    mixes every homenet's packets: one homenet's flood would cost another's voice."""
    edge = config.edge("edge1")
    commands = edge_homenet_shaping(edge, home, policy)
    fifos = [c for c in commands if c[:2] == ["qdisc", "replace"] and c[c.index("parent") + 1] != "1:2"]
    leaves = [c[c.index("classid") + 1] for c in commands if c[0] == "class" and "prio" in c]
    assert sorted(c[c.index("parent") + 1] for c in fifos) == sorted(leaves)
    assert all("handle" not in c and c[c.index("parent") + 2] == "pfifo_head_drop" for c in fifos)
    # 30 ms at ISP A's 97 Mbit/s is 240 full frames; at ISP B's 48.5, 120.
    bulk_a = _edge_class(commands, home.id, str(edge.tunnel_ip(0)), "no such match")
    bulk_b = _edge_class(commands, home.id, str(edge.tunnel_ip(1)), "no such match")
    limits = {c[c.index("parent") + 1]: c[-1] for c in fifos}
    assert (limits[bulk_a], limits[bulk_b]) == ("240", "120")


def test_too_many_queues_is_a_policy_error(home):
    doc = copy.deepcopy(POLICY)
    doc["classes"] = [{"name": f"c{i}", "match": {"protocol": "tcp", "dst_ports": [1000 + i]},
                       "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 1 + i}} for i in range(13)]
    with pytest.raises(ValueError) as info:
        parse_policy(doc, home)
    assert "classes[12].qos.dscp" in str(info.value)


def test_priority_minors_are_the_control_and_real_time_leaves_and_no_other(home):
    """bench/qos.py counts bulk's share of the link as every leaf but these: they must be
    exactly the prio 0 leaves other than the small packets' queue (TCP's ACKs are bulk's)."""
    policy = parse_policy(POLICY, home)
    commands = mspmb_shaping(policy, home.uplinks[0])
    prio0 = {int(c[c.index("classid") + 1].split(":")[1], 16) for c in commands
             if c[:2] == ["class", "replace"] and "prio" in c and c[c.index("prio") + 1] == "0"}
    leaves = {int(c[c.index("classid") + 1].split(":")[1], 16) for c in commands
              if c[:2] == ["class", "replace"] and c[c.index("parent") + 1] == "1:1"}
    assert leaves <= set(leaf_minors())
    assert priority_minors(policy) == prio0 - {SMALL_MINOR}
    assert len(priority_minors(policy)) == 2  # BFD's queue and voice's


def test_every_upstream_fifo_drops_from_its_head_and_bulk_holds_about_30_ms(home, policy):
    # A tail drop fails the switch's send, and OVS drops the rest of that batch with it, voice
    # included (tests/integration/test_qos.py); a head drop does not fail the send.
    commands = mspmb_shaping(policy, home.uplink("ispA"))  # 20 Mbit/s up, shaped to 19.4
    fifos = {c[c.index("parent") + 1]: c[c.index("handle") + 2:] for c in commands if c[:2] == ["qdisc", "replace"]
             and "parent" in c}
    assert fifos and all(kind == "pfifo_head_drop" for kind, *_ in fifos.values())
    default_leaf = "1:" + commands[0][-1]
    # 30 ms at 19.4 Mbit/s is 72,750 bytes: 48 full frames.
    assert fifos[default_leaf] == ["pfifo_head_drop", "limit", "48"]
    slow = mspmb_shaping(policy, home.uplink("ispB"))  # 5 Mbit/s: 30 ms is 12 frames, the floor is 16
    slow_fifos = [c[c.index("handle") + 2:] for c in slow if c[:2] == ["qdisc", "replace"]]
    assert ["pfifo_head_drop", "limit", "16"] in slow_fifos
