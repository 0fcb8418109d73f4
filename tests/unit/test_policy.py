"""Traffic policy validation: good policies parse and round-trip; each bad one names its field."""
from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from msp_controller.model.policy import (
    BALANCE,
    FAILOVER,
    MAX_CLASSES,
    SLA,
    ClassMatch,
    ClassPolicy,
    DirectionPolicy,
    FieldError,
    Policy,
    default_policy,
    parse_policy,
    policy_to_json,
    recheck_policy,
)
from msp_controller.model.portranges import PortRange

EXAMPLE: dict[str, Any] = {
    "classes": [
        {"name": "voice",
         "match": {"protocol": "udp", "dst_ports": ["16384-32767"], "dscp": 46, "sources": ["198.51.100.0/28"]},
         "egress": {"mode": "failover", "order": ["ispB", "ispA"]},
         "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}},
        {"name": "bulk",
         "match": {"protocol": "tcp", "dst_ports": [80, 443, "8000-8080"]},
         "egress": {"mode": "balance", "weights": {"ispA": 3, "ispB": 1}},
         "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}},
        {"name": "gaming",
         "match": {"protocol": "udp", "src_ports": ["27000-27100"], "sources": ["198.51.100.64/26"]},
         "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 50, "max_loss_pct": 2, "max_jitter_ms": 20},
         "ingress": {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 50, "max_loss_pct": 2}},
    ],
    "default": {"egress": {"mode": "failover", "order": ["ispA", "ispB"]},
                "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}},
}


@pytest.fixture
def home(config):
    return config.homenet("home1")


@pytest.fixture
def doc() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


def _parse_error(data: object, homenet) -> FieldError:
    with pytest.raises(FieldError) as caught:
        parse_policy(data, homenet)
    return caught.value


# --- good policies ---------------------------------------------------------------------


def test_example_parses(home, doc):
    policy = parse_policy(doc, home)
    voice, bulk, gaming = policy.classes
    assert voice.name == "voice"
    assert voice.match == ClassMatch(protocol=17, dst_ports=(PortRange(16384, 32767),), dscp=46,
                                     sources=(ipaddress.ip_network("198.51.100.0/28"),))
    assert voice.egress == DirectionPolicy(FAILOVER, order=("ispB", "ispA"))
    assert bulk.match.dst_ports == (PortRange(80, 80), PortRange(443, 443), PortRange(8000, 8080))
    assert bulk.egress == DirectionPolicy(BALANCE, weights=(("ispA", 3), ("ispB", 1)))
    assert gaming.egress.mode == SLA and gaming.egress.order == ("ispA", "ispB")
    assert (gaming.egress.max_rtt_ms, gaming.egress.max_loss_pct, gaming.egress.max_jitter_ms) == (50.0, 2.0, 20.0)
    assert gaming.ingress.max_jitter_ms is None
    assert (gaming.egress.hysteresis_pct, gaming.egress.recover_s) == (20.0, 10.0)
    assert policy.default == ClassPolicy(DirectionPolicy.failover(["ispA", "ispB"]),
                                         DirectionPolicy.failover(["ispA", "ispB"]))
    assert policy.traffic_class("bulk") is bulk
    assert policy.isps_used() == {"ispA", "ispB"}
    assert policy.needs_measurements()


def test_policy_is_frozen(home, doc):
    policy = parse_policy(doc, home)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.classes[0].name = "other"  # type: ignore[misc]


def test_failover_may_use_a_subset_of_isps(home, doc):
    doc["classes"][0]["egress"]["order"] = ["ispB"]
    policy = parse_policy(doc, home)
    assert policy.classes[0].egress.isps() == ("ispB",)


def test_balance_weights_are_kept_in_uplink_order(home, doc):
    doc["classes"][1]["egress"]["weights"] = {"ispB": 1, "ispA": 3}
    assert parse_policy(doc, home) == parse_policy(EXAMPLE, home)
    doc["classes"][1]["egress"]["weights"] = {"ispB": 100}
    assert parse_policy(doc, home).classes[1].egress.isps() == ("ispB",)


def test_sla_options(home, doc):
    doc["default"]["egress"] = {"mode": "sla", "order": ["ispB"], "max_loss_pct": 0, "hysteresis_pct": 0,
                                "recover_s": 3600}
    egress = parse_policy(doc, home).default.egress
    assert egress == DirectionPolicy(SLA, order=("ispB",), max_loss_pct=0.0, hysteresis_pct=0.0, recover_s=3600.0)
    assert isinstance(egress.max_loss_pct, float)


def test_default_may_use_any_mode(home, doc):
    doc["default"]["ingress"] = {"mode": "balance", "weights": {"ispA": 1, "ispB": 1}}
    assert parse_policy(doc, home).default.ingress.weights == (("ispA", 1), ("ispB", 1))


def test_classes_are_optional_and_may_be_empty(home, doc):
    del doc["classes"]
    assert parse_policy(doc, home).classes == ()
    doc["classes"] = []
    assert parse_policy(doc, home).classes == ()


def test_ports_and_sources_are_sorted(home, doc):
    doc["classes"][1]["match"]["dst_ports"] = ["8000-8080", 443, 80]
    doc["classes"][0]["match"]["sources"] = ["2001:db8:100:1::/64", "198.51.100.0/28"]
    policy = parse_policy(doc, home)
    assert policy.classes[1].match.dst_ports == (PortRange(80, 80), PortRange(443, 443), PortRange(8000, 8080))
    assert [str(n) for n in policy.classes[0].match.sources] == ["198.51.100.0/28", "2001:db8:100:1::/64"]


def test_protocol_numbers_and_names(home, doc):
    doc["classes"] = [
        {"name": "gre", "match": {"protocol": 47}, "egress": {"mode": "failover", "order": ["ispA"]},
         "ingress": {"mode": "failover", "order": ["ispA"]}},
        {"name": "ping", "match": {"protocol": "icmp"}, "egress": {"mode": "failover", "order": ["ispA"]},
         "ingress": {"mode": "failover", "order": ["ispA"]}},
        {"name": "ping6", "match": {"protocol": "icmpv6"}, "egress": {"mode": "failover", "order": ["ispA"]},
         "ingress": {"mode": "failover", "order": ["ispA"]}},
        {"name": "web", "match": {"protocol": 6, "dst_ports": ["1-65535"]}, "egress": {"mode": "failover",
         "order": ["ispA"]}, "ingress": {"mode": "failover", "order": ["ispA"]}},
    ]
    policy = parse_policy(doc, home)
    assert [c.match.protocol for c in policy.classes] == [47, 1, 58, 6]
    assert policy_to_json(policy)["classes"][3]["match"]["protocol"] == "tcp"  # type: ignore[index]


def test_classes_that_cannot_share_a_packet_are_accepted(home, doc):
    base = {"egress": {"mode": "failover", "order": ["ispA"]}, "ingress": {"mode": "failover", "order": ["ispA"]}}
    doc["classes"] = [dict(base, name=name, match=match) for name, match in [
        ("v4", {"protocol": "tcp", "dst_ports": [22], "sources": ["198.51.100.0/25"]}),
        ("v6", {"protocol": "tcp", "dst_ports": [22], "sources": ["2001:db8:100::/64"]}),
        ("other-half", {"protocol": "tcp", "dst_ports": [22], "sources": ["198.51.100.128/25"]}),
        ("ssh-alt", {"protocol": "tcp", "dst_ports": [2222]}),
        ("ssh-udp", {"protocol": "udp", "dst_ports": [22]}),
        ("ef", {"dscp": 46, "protocol": "icmp"}),
        ("af41", {"dscp": 34, "protocol": "icmp"}),
        ("src-ports", {"protocol": "tcp", "src_ports": ["1-1023"], "dst_ports": [23]}),
        ("src-ports2", {"protocol": "tcp", "src_ports": ["1024-65535"], "dst_ports": [23]}),
    ]]
    assert len(parse_policy(doc, home).classes) == 9


def test_overlap_message_gives_a_packet_matching_both(home, doc):
    del doc["classes"][2]["match"]["sources"]
    error = _parse_error(doc, home)
    assert error.where == "classes[2].match"
    assert error.problem == ("overlaps class 'voice': a udp packet from 198.51.100.1 with source port 27000, "
                             "destination port 16384 and dscp 46 matches both")


def test_overlap_needs_sources_of_the_same_family(home, doc):
    doc["classes"].append({"name": "ef", "match": {"protocol": "udp", "dscp": 46, "sources": ["2001:db8:100::/64"]},
                           "egress": {"mode": "failover", "order": ["ispA"]},
                           "ingress": {"mode": "failover", "order": ["ispA"]}})
    assert parse_policy(doc, home).classes[3].name == "ef"  # only IPv6; voice is only IPv4
    doc["classes"][3]["match"]["sources"].append("198.51.100.8/29")
    error = _parse_error(doc, home)
    assert error.where == "classes[3].match"
    assert "'voice': a udp packet from 198.51.100.9 with destination port 16384 and dscp 46" in error.problem


def test_max_classes_is_allowed(home, doc):
    base = {"egress": {"mode": "failover", "order": ["ispA"]}, "ingress": {"mode": "failover", "order": ["ispA"]}}
    doc["classes"] = [dict(base, name=f"c{i}", match={"protocol": "tcp", "dst_ports": [1000 + i]})
                      for i in range(MAX_CLASSES)]
    assert len(parse_policy(doc, home).classes) == MAX_CLASSES


# --- defaults, round trip, recheck -------------------------------------------------------


def test_default_policy_follows_the_config(home):
    home = dataclasses.replace(home, egress_order=("ispB", "ispA"), ingress_order=("ispA",))
    policy = default_policy(home)
    assert policy == Policy.default_for(home)
    assert policy.classes == ()
    assert policy.default.egress == DirectionPolicy(FAILOVER, order=("ispB", "ispA"))
    assert policy.default.ingress == DirectionPolicy(FAILOVER, order=("ispA",))
    assert not policy.needs_measurements()
    assert parse_policy(policy_to_json(policy), home) == policy


def test_round_trip(home, doc):
    doc["default"]["egress"] = {"mode": "sla", "order": ["ispB"], "max_jitter_ms": 0.5, "hysteresis_pct": 33.3}
    doc["classes"][1]["match"]["src_ports"] = ["1024-65535"]
    doc["classes"][0]["match"]["sources"].append("2001:db8:100:ff::/64")
    doc["classes"].append({"name": "gre", "match": {"protocol": 47},
                           "egress": {"mode": "balance", "weights": {"ispB": 2}},
                           "ingress": {"mode": "failover", "order": ["ispB"]}})
    policy = parse_policy(doc, home)
    as_json = policy_to_json(policy)
    assert parse_policy(as_json, home) == policy
    assert policy_to_json(parse_policy(as_json, home)) == as_json
    assert as_json["classes"][1]["match"] == {  # type: ignore[index]
        "protocol": "tcp", "src_ports": ["1024-65535"], "dst_ports": [80, 443, "8000-8080"]}


def test_round_trip_through_json_text(home, doc):
    policy = parse_policy(doc, home)
    assert parse_policy(json.loads(json.dumps(policy_to_json(policy))), home) == policy


def test_recheck_after_an_isp_is_removed(home, doc):
    policy = parse_policy(doc, home)
    assert recheck_policy(policy, home) == policy
    only_a = dataclasses.replace(home, uplinks=home.uplinks[:1], egress_order=("ispA",), ingress_order=("ispA",))
    error = _parse_error(policy_to_json(policy), only_a)
    assert error.where == "classes[0].egress.order[0]" and "unknown ISP 'ispB'" in error.problem
    with pytest.raises(FieldError):
        recheck_policy(policy, only_a)


# --- mirroring and SLA helpers -----------------------------------------------------------


def test_mirrored_match_swaps_ports_and_turns_sources_into_destinations(home, doc):
    doc["classes"][0]["match"]["src_ports"] = [5060]
    voice = parse_policy(doc, home).classes[0].match
    out, back = voice.as_egress(), voice.mirrored()
    net = ipaddress.ip_network("198.51.100.0/28")
    assert (out.src_nets, out.dst_nets) == ((net,), ())
    assert (back.src_nets, back.dst_nets) == ((), (net,))
    assert out.src_ports == back.dst_ports == (PortRange(5060, 5060),)
    assert out.dst_ports == back.src_ports == (PortRange(16384, 32767),)
    assert out.protocol == back.protocol == 17 and out.dscp == back.dscp == 46
    assert back.ip_versions() == (4,)
    assert ClassMatch(protocol=6).mirrored().ip_versions() == (4, 6)


def test_flow_entry_estimate():
    match = ClassMatch(protocol=6, src_ports=(PortRange(1024, 65535),), dst_ports=(PortRange(80, 80),
                       PortRange(8000, 8080)), sources=(ipaddress.ip_network("198.51.100.0/28"),))
    assert match.flow_entries() == 6 * 4 * 1
    assert ClassMatch(dscp=46).flow_entries() == 2  # one per IP version


def test_sla_checks_with_hysteresis():
    sla = DirectionPolicy(SLA, order=("ispA",), max_rtt_ms=50.0, max_loss_pct=2.0, hysteresis_pct=20.0)
    assert sla.meets_sla(50.0, 2.0)
    assert not sla.meets_sla(50.1, 0.0)
    assert not sla.meets_sla(10.0, None)  # unmeasured loss is not known to be good
    assert sla.meets_sla(10.0, 1.0, None)  # jitter has no threshold
    assert not sla.meets_sla(45.0, 1.0, recovering=True)  # needs 40 ms and 1.6 % to come back
    assert sla.meets_sla(40.0, 1.6, recovering=True)
    assert DirectionPolicy.failover(["ispA"]).meets_sla(None, None)


def test_error_str_and_type(home):
    error = _parse_error({"default": 5}, home)
    assert isinstance(error, ValueError)
    assert str(error) == "default: must be an object, not 5"
    root = _parse_error([], home)
    assert root.where == "" and str(root) == "must be an object, not a list"


# --- bad policies --------------------------------------------------------------------------

Change = Callable[[dict], Any]


def _cls(index: int) -> Callable[[dict], dict]:
    return lambda d: d["classes"][index]


def _part(index: int, *keys: str) -> Callable[[dict], dict]:
    def get(d: dict) -> dict:
        node = d["classes"][index]
        for key in keys:
            node = node[key]
        return node
    return get


def _set(getter: Callable[[dict], dict], key: str, value: Any) -> Change:
    def change(data: dict) -> None:
        getter(data)[key] = value
    return change


def _delete(getter: Callable[[dict], dict], key: str) -> Change:
    def change(data: dict) -> None:
        del getter(data)[key]
    return change


def _add_class(name: str, match: dict) -> Change:
    def change(data: dict) -> None:
        data["classes"].append({"name": name, "match": match, "egress": {"mode": "failover", "order": ["ispA"]},
                                "ingress": {"mode": "failover", "order": ["ispA"]}})
    return change


def _root(d: dict) -> dict:
    return d


def _default(d: dict) -> dict:
    return d["default"]


_voice_match = _part(0, "match")
_bulk_match = _part(1, "match")
_voice_egress = _part(0, "egress")
_bulk_egress = _part(1, "egress")
_gaming_egress = _part(2, "egress")
_bulk_weights = _part(1, "egress", "weights")
_UNALIGNED = [f"{1 + 4 * i}-{3 + 4 * i}" for i in range(32)]  # 2 masks each

BAD_POLICIES: dict[str, tuple[Change, str, str]] = {
    # (change, field the error must name, words the message must contain)
    "root is a list": (lambda d: [d], "", "must be an object"),
    "unknown top-level key": (_set(_root, "clases", []), "clases", "unknown field"),
    "no default": (_delete(_root, "default"), "default", "required"),
    "default is a string": (_set(_root, "default", "failover"), "default", "must be an object"),
    "default with a match": (_set(_default, "match", {"dscp": 1}), "default.match", "unknown field"),
    "default without ingress": (_delete(_default, "ingress"), "default.ingress", "required"),
    "default ingress unknown isp": (lambda d: d["default"]["ingress"].update(order=["ispZ"]),
                                    "default.ingress.order[0]", "unknown ISP 'ispZ'"),
    "classes is an object": (_set(_root, "classes", {"voice": {}}), "classes", "must be a list"),
    "classes is null": (_set(_root, "classes", None), "classes", "must be a list, not null"),
    "too many classes": (lambda d: d["classes"].extend([d["classes"][0]] * MAX_CLASSES), "classes", "at most 64"),
    "class is a string": (lambda d: d["classes"].insert(0, "voice"), "classes[0]", "must be an object"),
    "unknown class key": (_set(_cls(0), "priority", 1), "classes[0].priority", "unknown field"),
    "class without name": (_delete(_cls(0), "name"), "classes[0].name", "required"),
    "class name not a string": (_set(_cls(0), "name", 5), "classes[0].name", "must be a string"),
    "class name uppercase": (_set(_cls(0), "name", "Voice"), "classes[0].name", "does not match"),
    "class name too long": (_set(_cls(0), "name", "v" * 33), "classes[0].name", "does not match"),
    "class name with newline": (_set(_cls(0), "name", "voice\n"), "classes[0].name", "does not match"),
    "class named default": (_set(_cls(1), "name", "default"), "classes[1].name", "reserved"),
    "duplicate class name": (_set(_cls(1), "name", "voice"), "classes[1].name", "duplicate class name 'voice'"),
    "class without match": (_delete(_cls(0), "match"), "classes[0].match", "required"),
    "empty match": (_set(_cls(0), "match", {}), "classes[0].match", "at least one of"),
    "match is a list": (_set(_cls(0), "match", []), "classes[0].match", "must be an object"),
    "unknown match key": (_set(_voice_match, "dst_port", 5060), "classes[0].match.dst_port", "unknown field"),
    "unknown protocol": (_set(_voice_match, "protocol", "sctp"), "classes[0].match.protocol", "unknown protocol"),
    "protocol upper case": (_set(_voice_match, "protocol", "UDP"), "classes[0].match.protocol", "unknown protocol"),
    "protocol too big": (_set(_voice_match, "protocol", 256), "classes[0].match.protocol", "out of range"),
    "protocol bool": (_set(_voice_match, "protocol", True), "classes[0].match.protocol", "integer, not true"),
    "protocol float": (_set(_voice_match, "protocol", 17.0), "classes[0].match.protocol", "integer"),
    "ports without protocol": (_delete(_bulk_match, "protocol"), "classes[1].match.dst_ports", "tcp or udp"),
    "ports with icmp": (_set(_bulk_match, "protocol", "icmp"), "classes[1].match.dst_ports", "not icmp"),
    "ports with gre": (_set(_bulk_match, "protocol", 47), "classes[1].match.dst_ports", "not protocol 47"),
    "empty port list": (_set(_bulk_match, "dst_ports", []), "classes[1].match.dst_ports", "non-empty"),
    "port list is a number": (_set(_bulk_match, "dst_ports", 80), "classes[1].match.dst_ports", "must be a list"),
    "port zero": (_set(_bulk_match, "dst_ports", [0]), "classes[1].match.dst_ports[0]", "out of range"),
    "port too big": (_set(_bulk_match, "src_ports", [65536]), "classes[1].match.src_ports[0]", "out of range"),
    "port bool": (_set(_bulk_match, "dst_ports", [80, True]), "classes[1].match.dst_ports[1]", "port number"),
    "port float": (_set(_bulk_match, "dst_ports", [80.0]), "classes[1].match.dst_ports[0]", "port number"),
    "port null": (_set(_bulk_match, "dst_ports", [None]), "classes[1].match.dst_ports[0]", "not null"),
    "range backwards": (_set(_bulk_match, "dst_ports", ["443-80"]), "classes[1].match.dst_ports[0]", "above"),
    "range with spaces": (_set(_bulk_match, "dst_ports", ["80 - 443"]), "classes[1].match.dst_ports[0]", "low-high"),
    "range from zero": (_set(_bulk_match, "dst_ports", ["0-80"]), "classes[1].match.dst_ports[0]", "out of range"),
    "range past the top": (_set(_bulk_match, "dst_ports", ["80-99999"]), "classes[1].match.dst_ports[0]",
                           "out of range"),
    "port as a string": (_set(_bulk_match, "dst_ports", ["80"]), "classes[1].match.dst_ports[0]", "low-high"),
    "duplicate port": (_set(_bulk_match, "dst_ports", [80, 443, 80]), "classes[1].match.dst_ports[2]", "duplicate"),
    "overlapping ranges": (_set(_bulk_match, "dst_ports", ["8000-8080", 22, "8080-8090"]),
                           "classes[1].match.dst_ports[2]", "overlaps 8000-8080"),
    "too many port ranges": (_set(_bulk_match, "dst_ports", list(range(1, 34))), "classes[1].match.dst_ports",
                             "at most 32"),
    "too many flow entries": (lambda d: _bulk_match(d).update(src_ports=_UNALIGNED, dst_ports=_UNALIGNED),
                              "classes[1].match", "flow entries"),
    "dscp too big": (_set(_voice_match, "dscp", 64), "classes[0].match.dscp", "out of range 0..63"),
    "dscp string": (_set(_voice_match, "dscp", "46"), "classes[0].match.dscp", "integer, not '46'"),
    "dscp null": (_set(_voice_match, "dscp", None), "classes[0].match.dscp", "integer, not null"),
    "dscp huge": (_set(_voice_match, "dscp", 10**5000), "classes[0].match.dscp", "huge integer"),
    "sources not a list": (_set(_voice_match, "sources", "198.51.100.0/28"), "classes[0].match.sources",
                           "must be a list"),
    "source outside": (_set(_voice_match, "sources", ["192.0.2.0/24"]), "classes[0].match.sources[0]",
                       "not inside the homenet's prefixes"),
    "source bigger than prefix": (_set(_voice_match, "sources", ["198.51.0.0/16"]), "classes[0].match.sources[0]",
                                  "not inside"),
    "v6 source outside": (_set(_voice_match, "sources", ["2001:db8:200::/64"]), "classes[0].match.sources[0]",
                          "not inside"),
    "source with host bits": (_set(_voice_match, "sources", ["198.51.100.1/28"]), "classes[0].match.sources[0]",
                              "not a prefix"),
    "source garbage": (_set(_voice_match, "sources", ["voice"]), "classes[0].match.sources[0]", "not a prefix"),
    "source as integer": (_set(_voice_match, "sources", [3325256704]), "classes[0].match.sources[0]",
                          "must be a string"),
    "scoped source": (_set(_voice_match, "sources", ["2001:db8:100::%eth0/64"]), "classes[0].match.sources[0]",
                      "scoped"),
    "duplicate source": (_set(_voice_match, "sources", ["198.51.100.0/28", "198.51.100.0/28"]),
                         "classes[0].match.sources[1]", "duplicate"),
    "overlapping sources": (_set(_voice_match, "sources", ["198.51.100.0/28", "198.51.100.0/24"]),
                            "classes[0].match.sources[1]", "overlaps 198.51.100.0/28"),
    "overlapping classes": (_add_class("web", {"protocol": "tcp", "dst_ports": ["440-450"]}), "classes[3].match",
                            "overlaps class 'bulk': a tcp packet with destination port 443"),
    "class without protocol overlaps": (_add_class("cs1", {"dscp": 8}), "classes[3].match",
                                        "overlaps class 'bulk': a tcp packet with destination port 80 and dscp 8"),
    "gaming without sources": (_delete(_part(2, "match"), "sources"), "classes[2].match", "overlaps class 'voice'"),
    "class without egress": (_delete(_cls(0), "egress"), "classes[0].egress", "required"),
    "egress is a list": (_set(_cls(0), "egress", ["ispA"]), "classes[0].egress", "must be an object"),
    "no mode": (_delete(_voice_egress, "mode"), "classes[0].egress.mode", "required"),
    "unknown mode": (_set(_voice_egress, "mode", "roundrobin"), "classes[0].egress.mode", "unknown mode"),
    "mode not a string": (_set(_voice_egress, "mode", 1), "classes[0].egress.mode", "must be a string"),
    "failover without order": (_delete(_voice_egress, "order"), "classes[0].egress.order", "required"),
    "empty order": (_set(_voice_egress, "order", []), "classes[0].egress.order", "non-empty"),
    "order is a string": (_set(_voice_egress, "order", "ispA"), "classes[0].egress.order", "must be a list"),
    "unknown isp in order": (_set(_voice_egress, "order", ["ispA", "ispC"]), "classes[0].egress.order[1]",
                             "unknown ISP 'ispC'"),
    "duplicate isp in order": (_set(_voice_egress, "order", ["ispA", "ispB", "ispA"]), "classes[0].egress.order[2]",
                               "duplicate ISP"),
    "isp not a string": (_set(_voice_egress, "order", [0]), "classes[0].egress.order[0]", "must be a string"),
    "failover with weights": (_set(_voice_egress, "weights", {"ispA": 1}), "classes[0].egress.weights",
                              "not a field of mode 'failover'"),
    "balance with order": (_set(_bulk_egress, "order", ["ispA"]), "classes[1].egress.order",
                           "not a field of mode 'balance'"),
    "balance without weights": (_delete(_bulk_egress, "weights"), "classes[1].egress.weights", "required"),
    "empty weights": (_set(_bulk_egress, "weights", {}), "classes[1].egress.weights", "at least one"),
    "weights as a list": (_set(_bulk_egress, "weights", [["ispA", 1]]), "classes[1].egress.weights",
                          "must be an object"),
    "weight for unknown isp": (_set(_bulk_weights, "ispC", 1), "classes[1].egress.weights.ispC", "unknown ISP"),
    "weight zero": (_set(_bulk_weights, "ispA", 0), "classes[1].egress.weights.ispA", "out of range 1..100"),
    "weight too big": (_set(_bulk_weights, "ispB", 101), "classes[1].egress.weights.ispB", "out of range"),
    "weight float": (_set(_bulk_weights, "ispA", 1.5), "classes[1].egress.weights.ispA", "must be an integer"),
    "weight bool": (_set(_bulk_weights, "ispA", True), "classes[1].egress.weights.ispA", "must be an integer"),
    "weight key not a string": (_set(_bulk_weights, 1, 1), "classes[1].egress.weights.1", "strings"),  # type: ignore[arg-type]
    "sla without order": (_delete(_gaming_egress, "order"), "classes[2].egress.order", "required"),
    "sla without thresholds": (lambda d: d["classes"][2].update(egress={"mode": "sla", "order": ["ispA"]}),
                               "classes[2].egress", "at least one of max_rtt_ms"),
    "sla with weights": (_set(_gaming_egress, "weights", {"ispA": 1}), "classes[2].egress.weights",
                         "not a field of mode 'sla'"),
    "rtt too small": (_set(_gaming_egress, "max_rtt_ms", 0.5), "classes[2].egress.max_rtt_ms", "out of range 1..10000"),
    "rtt string": (_set(_gaming_egress, "max_rtt_ms", "50"), "classes[2].egress.max_rtt_ms", "must be a number"),
    "rtt bool": (_set(_gaming_egress, "max_rtt_ms", False), "classes[2].egress.max_rtt_ms", "must be a number"),
    "rtt nan": (_set(_gaming_egress, "max_rtt_ms", math.nan), "classes[2].egress.max_rtt_ms", "out of range"),
    "rtt infinite": (_set(_gaming_egress, "max_rtt_ms", math.inf), "classes[2].egress.max_rtt_ms", "out of range"),
    "rtt null": (_set(_gaming_egress, "max_rtt_ms", None), "classes[2].egress.max_rtt_ms", "number, not null"),
    "loss over 100": (_set(_gaming_egress, "max_loss_pct", 100.5), "classes[2].egress.max_loss_pct", "out of range"),
    "jitter negative": (_set(_gaming_egress, "max_jitter_ms", -1), "classes[2].egress.max_jitter_ms", "out of range"),
    "hysteresis too big": (_set(_gaming_egress, "hysteresis_pct", 150), "classes[2].egress.hysteresis_pct",
                           "out of range 0..100"),
    "recover too long": (_set(_gaming_egress, "recover_s", 4000), "classes[2].egress.recover_s", "out of range"),
    "recover huge": (_set(_gaming_egress, "recover_s", 10**400), "classes[2].egress.recover_s", "huge integer"),
    "ingress unknown key": (_set(_part(2, "ingress"), "max_rtt", 5), "classes[2].ingress.max_rtt",
                            "not a field of mode 'sla'"),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_bad_policy_is_refused_naming_the_field(home, doc, case):
    change, where, words = BAD_POLICIES[case]
    replaced = change(doc)
    error = _parse_error(doc if replaced is None else replaced, home)
    assert error.where == where, str(error)
    assert words in error.problem, str(error)


def test_there_are_enough_bad_cases():
    assert len(BAD_POLICIES) >= 40


# --- fuzzing -------------------------------------------------------------------------------

KEYS = ["classes", "default", "name", "match", "egress", "ingress", "mode", "order", "weights", "protocol",
        "src_ports", "dst_ports", "dscp", "sources", "max_rtt_ms", "max_loss_pct", "max_jitter_ms",
        "hysteresis_pct", "recover_s", "ispA", "ispB", "x", ""]
STRINGS = ["tcp", "udp", "icmp", "icmpv6", "failover", "balance", "sla", "ispA", "ispB", "ispC", "voice", "default",
           "80-90", "90-80", "1-65535", "0-0", "198.51.100.0/28", "198.51.100.0/24", "2001:db8:100::/64",
           "2001:db8:100::%1/64", "10.0.0.0/8", "", "\x00", "ü", "x" * 200, "1e400", "NaN", "-"]
NUMBERS: list[object] = [0, 1, -1, 2, 46, 63, 64, 80, 100, 101, 255, 256, 65535, 65536, 10**30, 10**5000, 0.5,
                         -0.0, 1e308, math.inf, -math.inf, math.nan, True, False, None]
ODDITIES: list[object] = [(), (1, 2), b"tcp", object(), {1, 2}, frozenset(), 1j]


def _garbage(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(NUMBERS)
    if roll < 0.65:
        return rng.choice(STRINGS)
    if roll < 0.70:
        return rng.choice(ODDITIES)
    if roll < 0.85:
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys: list[object] = [rng.choice(KEYS) for _ in range(rng.randrange(4))]
    if rng.random() < 0.1:
        keys.append(rng.choice([1, None, (1,), 2.5]))
    return {key: _garbage(rng, depth + 1) for key in keys}


def _nodes(value: object) -> list[object]:
    """Every list and dict inside value, value included."""
    found = [value] if isinstance(value, (list, dict)) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        found.extend(_nodes(child))
    return found


def _mutate(rng: random.Random, data: dict) -> None:
    node = rng.choice(_nodes(data))
    if isinstance(node, dict):
        keys = list(node)
        action = rng.random()
        if keys and action < 0.4:
            node[rng.choice(keys)] = _garbage(rng) if rng.random() < 0.7 else rng.choice(NUMBERS + STRINGS)
        elif keys and action < 0.6:
            del node[rng.choice(keys)]
        else:
            node[rng.choice(KEYS)] = _garbage(rng)
    elif isinstance(node, list):
        action = rng.random()
        if node and action < 0.4:
            node[rng.randrange(len(node))] = _garbage(rng)
        elif node and action < 0.6:
            node.append(copy.deepcopy(rng.choice(node)))
        elif node and action < 0.8:
            node.pop(rng.randrange(len(node)))
        else:
            node.insert(0, _garbage(rng))


def test_fuzzed_input_gives_a_policy_or_a_policy_error(home):
    rng = random.Random(20240611)
    started = time.monotonic()
    outcomes = {"ok": 0, "refused": 0}
    for attempt in range(2000):
        data: object
        if attempt % 5 == 0:
            data = _garbage(rng)
        else:
            data = copy.deepcopy(EXAMPLE)
            for _ in range(rng.randint(1, 3)):
                _mutate(rng, data)  # type: ignore[arg-type]
        try:
            policy = parse_policy(data, home)
        except FieldError as error:
            assert isinstance(error.where, str) and error.problem, repr(data)
            outcomes["refused"] += 1
        else:
            assert parse_policy(policy_to_json(policy), home) == policy
            outcomes["ok"] += 1
    assert outcomes["ok"] > 20 and outcomes["refused"] > 1000, outcomes
    assert time.monotonic() - started < 2.0


def test_shipped_example_policy_is_valid(config):
    import json
    import pathlib
    example = pathlib.Path(__file__).resolve().parents[2] / "etc" / "examples" / "voice-on-isp-b.json"
    policy = parse_policy(json.loads(example.read_text()), config.homenet("home1"))
    assert [c.name for c in policy.classes] == ["voice", "bulk", "gaming"]
