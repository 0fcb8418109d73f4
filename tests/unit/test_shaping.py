"""The tc commands that shape each ISP's traffic just below its rates, classes inside."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from msp_controller.dataplane.shaping import (
    SHAPE_FRACTION,
    EdgeLink,
    clear_commands,
    edge_shaping,
    mspmb_shaping,
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


def _flowid(commands: list[list[str]], *matches: str) -> str:
    """The class a packet with these u32 matches goes to (the lowest filter prio wins)."""
    candidates = []
    for c in commands:
        if c[:2] == ["filter", "add"]:
            text = " ".join(c)
            if all(m in text for m in matches):
                candidates.append((int(c[c.index("prio") + 1]), c[c.index("flowid") + 1]))
    assert candidates, matches
    return min(candidates)[1]


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
        # Every class may use the whole shaped rate, and none more; small packets (ACKs) a quarter.
        small = _flowid(commands, "match u16 0x0000 0xff80 at 2")
        assert {c["ceil"] for k, c in classes.items() if k != small} == {f"{int(up * SHAPE_FRACTION)}kbit"}
        assert classes[small]["ceil"] == f"{int(up * SHAPE_FRACTION / 4)}kbit"
        # Unmarked traffic falls to the default leaf (the root's default).
        assert commands[0][-1] not in (voice.split(":")[1], video.split(":")[1])


def test_no_rate_no_shaping(home, policy, config):
    unshaped = parse_policy({**copy.deepcopy(POLICY), "rates": {"ispA": {"down_kbps": 1000}}}, home)
    assert mspmb_shaping(unshaped, home.uplink("ispA")) == []
    assert len(edge_shaping("edge1-up", [EdgeLink(home, home.uplink("ispB"), "198.18.2.2", unshaped)])) == 2
    assert clear_commands("x") == [["qdisc", "del", "dev", "x", "root"]]


def test_downstream_is_shaped_per_homenet_and_isp(home, policy):
    links = [EdgeLink(home, home.uplink("ispA"), "198.18.1.2", policy),
             EdgeLink(home, home.uplink("ispB"), "198.18.2.2", policy)]
    commands = edge_shaping("edge1-up", links)
    classes = _classes(commands)
    voice_a = _flowid(commands, "tos 0xb8 0xfc", "dst 198.18.1.2/32")
    voice_b = _flowid(commands, "tos 0xb8 0xfc", "dst 198.18.2.2/32")
    bulk_b = _flowid(commands, "dst 198.18.2.2/32")
    assert voice_a != voice_b and classes[voice_b]["prio"] == "0"
    # After a failover to ISP B, its traffic is shaped to ISP B's down rate.
    assert classes[voice_b]["ceil"] == classes[bulk_b]["ceil"] == f"{int(50000 * SHAPE_FRACTION)}kbit"
    assert classes[voice_a]["ceil"] == f"{int(100000 * SHAPE_FRACTION)}kbit"
    # Everything else leaves unshaped (the root's default class).
    assert commands[0][-1] == "ffff" and "1:ffff" in classes


def test_bfd_goes_first_at_both_ends(home, policy):
    """BFD waiting behind bulk for three intervals would be a false failover."""
    for commands in (mspmb_shaping(policy, home.uplink("ispA")),
                     edge_shaping("edge1-up", [EdgeLink(home, home.uplink("ispA"), "198.18.1.2", policy)])):
        bfd = _flowid(commands, "u16 3784 0xffff at 72", "dport 4789")
        assert _classes(commands)[bfd]["prio"] == "0"


def test_too_many_queues_is_a_policy_error(home):
    doc = copy.deepcopy(POLICY)
    doc["classes"] = [{"name": f"c{i}", "match": {"protocol": "tcp", "dst_ports": [1000 + i]},
                       "egress": FAILOVER_AB, "ingress": FAILOVER_AB, "qos": {"dscp": 1 + i}} for i in range(13)]
    with pytest.raises(ValueError) as info:
        parse_policy(doc, home)
    assert "classes[12].qos.dscp" in str(info.value)
