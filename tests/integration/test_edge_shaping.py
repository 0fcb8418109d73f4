"""The edge's downstream shaping in the real kernel, at 1,000 homenets on one port: a tunnel
packet lands in its own homenet's, ISP's and class's queue, and one homenet's update leaves
every other homenet's queues as they were.

A namespace of its own with a veth pair (no OVS needed): the commands are the ones
dataplane/shaping.py gives the edge; packets are VXLAN frames sent on the port by a raw
socket, and tc's own per-class counters say where each went.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess

import pytest

from msp_controller.dataplane.shaping import (
    edge_base_shaping,
    edge_homenet_major,
    edge_homenet_shaping,
    edge_homenet_update,
    edge_pair_class,
    edge_pair_ids,
    leaf_minors,
)
from msp_controller.model.policy import parse_policy
from tests.integration.conftest import NEEDS
from tests.integration.edge_port import in_namespace, make_port, send_frames, sent_by_class, vxlan_frame

pytestmark = NEEDS

HOMENETS = 1000
PORT = "eshape0"
FAILOVER = {"mode": "failover", "order": ["ispA", "ispB"]}
POLICY = {
    "classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
                 "egress": FAILOVER, "ingress": FAILOVER, "qos": {"dscp": 46, "priority": "realtime"}}],
    "default": {"egress": FAILOVER, "ingress": FAILOVER, "qos": {"dscp": 0, "priority": 10}},
    "rates": {"ispA": {"down_kbps": 100000}, "ispB": {"down_kbps": 50000}},
}
NAMESPACE = f"msp-t-eshape-{os.getpid()}"


@pytest.fixture
def port():
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        make_port(NAMESPACE, PORT)
        yield PORT
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)


def _ns(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    return in_namespace(NAMESPACE, *argv, stdin=stdin, check=check)


def _batch(commands: list[list[str]], force: bool = False) -> None:
    _ns("tc", *(["-force"] if force else []), "-batch", "-", stdin="".join(" ".join(c) + "\n" for c in commands),
        check=not force)


def _send(frames: list[bytes]) -> None:
    send_frames(NAMESPACE, PORT, frames)


def _sent_by_class() -> dict[str, int]:
    return sent_by_class(NAMESPACE, PORT)


def _leaves(homenet_id: int, slot: int) -> set[str]:
    major, block = edge_pair_ids(homenet_id, slot)
    return {f"{major:x}:{block | minor:x}" for minor in leaf_minors()}


def test_a_thousand_homenets_each_packet_in_its_own_homenets_isp_and_class(config, port):
    home, edge = config.homenet("home1"), config.edge("edge1")
    edge = dataclasses.replace(edge, underlay_port=PORT)
    policy = parse_policy(POLICY, home)
    homenets = [dataclasses.replace(home, id=n) for n in range(1, HOMENETS + 1)]
    commands = edge_base_shaping(PORT)
    for homenet in homenets:
        commands += edge_homenet_shaping(edge, homenet, policy)
    _batch(commands)
    # Every leaf drops from its head: 1,000 homenets, 2 ISPs, 4 leaves each (voice, bulk,
    # small packets, BFD), their handles picked by the kernel.
    qdiscs = _ns("tc", "qdisc", "show", "dev", PORT).splitlines()
    fifos = [int(line.split()[2].rstrip(":"), 16) for line in qdiscs if line.startswith("qdisc pfifo_head_drop ")]
    assert len(fifos) == HOMENETS * 2 * 4 and min(fifos) >= 0x8000
    assert not any(line.startswith("qdisc pfifo ") for line in qdiscs)
    slot_a, slot_b = str(edge.tunnel_ip(0)), str(edge.tunnel_ip(1))
    # Homenets that share the hash bucket (1, 257, 513) and neighbours, each ISP, voice and bulk.
    probes = [(vni, src, dscp) for vni in (1, 2, 257, 513, 1000) for src in (slot_a, slot_b) for dscp in (46, 0)]
    counts = {probe: 3 + n for n, probe in enumerate(probes)}  # a different count each: no two can mix up
    _send([vxlan_frame(src, vni, dscp) for (vni, src, dscp), count in counts.items() for _ in range(count)])
    sent = _sent_by_class()
    leaves = {}
    for vni in (1, 2, 257, 513, 1000):
        for slot, src in enumerate((slot_a, slot_b)):
            pair = {k: v for k, v in sent.items() if k in _leaves(vni, slot) and v}
            # Exactly two of this pair's leaves got packets, voice's and bulk's counts (all different).
            voice, bulk = counts[(vni, src, 46)], counts[(vni, src, 0)]
            assert sorted(pair.values()) == sorted((voice, bulk)), (vni, src, pair)
            leaves[(vni, slot, 46)] = next(k for k, v in pair.items() if v == voice)
            leaves[(vni, slot, 0)] = next(k for k, v in pair.items() if v == bulk)
    # In each pair voice has the real-time leaf (HTB prio 0), bulk the default one.
    out = _ns("tc", "class", "show", "dev", PORT)
    assert re.search(rf"class htb {leaves[(1, 0, 46)]} parent \S+ (leaf \S+ )?prio 0 ", out), out[:2000]
    # Not a tunnel of a shaped homenet: the root's unshaped class.
    def in_pairs(found: dict[str, int]) -> int:
        return sum(v for k, v in found.items() if not k.startswith("1:"))

    before = _sent_by_class()  # the port's own IPv6 chatter is in 1:ffff too
    _send([vxlan_frame(slot_a, HOMENETS + 5, 0)] * 7)
    after = _sent_by_class()
    assert after["1:ffff"] >= before.get("1:ffff", 0) + 7 and in_pairs(after) == in_pairs(before)

    # One homenet's new rates: its pairs rebuilt, every other homenet's queues untouched.
    before = _sent_by_class()
    faster = parse_policy({**POLICY, "rates": {"ispA": {"down_kbps": 200000}}}, home)
    _batch(edge_homenet_update(edge, homenets[256], faster), force=True)  # homenet 257
    after = _sent_by_class()
    moved = {k for k in before if before[k] != after.get(k)}
    mine = f"{edge_homenet_major(257):x}"
    assert {k.split(":")[0] for k in moved} <= {mine, "1"}, moved  # only 257's own (and its root class)
    assert edge_pair_class(257, 1) not in after  # ISP B has no rate now: not shaped
    out = _ns("tc", "class", "show", "dev", PORT, "classid", edge_pair_class(257, 0))
    assert "rate 194Mbit" in out, out
    _send([vxlan_frame(slot_a, 257, 46)] * 4 + [vxlan_frame(slot_a, 1, 46)] * 4)
    final = _sent_by_class()
    assert final[leaves[(1, 0, 46)]] == after[leaves[(1, 0, 46)]] + 4  # homenet 1 as before
    assert sum(v for k, v in final.items() if k in _leaves(257, 0)) == 4
