"""QoS fields of a policy: a class's marking, priority and rate limit, and the ISPs' rates."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from msp_controller.model.config import parse_config
from msp_controller.model.policy import FieldError, default_policy, parse_policy, policy_to_json
from msp_controller.model.qos import REALTIME, TRUST, ClassQos, IspRates

VOICE_QOS = {"dscp": 46, "priority": "realtime", "max_rate_kbps": 2000}
POLICY: dict[str, Any] = {
    "classes": [
        {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
         "egress": {"mode": "failover", "order": ["ispA", "ispB"]},
         "ingress": {"mode": "failover", "order": ["ispA", "ispB"]},
         "qos": VOICE_QOS},
        {"name": "bulk", "match": {"protocol": "tcp", "dst_ports": [443]},
         "egress": {"mode": "failover", "order": ["ispA", "ispB"]},
         "ingress": {"mode": "failover", "order": ["ispA", "ispB"]},
         "qos": {"dscp": 8, "priority": 5}},
    ],
    "default": {"egress": {"mode": "failover", "order": ["ispA", "ispB"]},
                "ingress": {"mode": "failover", "order": ["ispA", "ispB"]},
                "qos": {"dscp": 0}},
    "rates": {"ispB": {"down_kbps": 50000, "up_kbps": 10000}, "ispA": {"down_kbps": 100000, "up_kbps": 20000}},
}


@pytest.fixture
def home(config):
    return config.homenet("home1")


@pytest.fixture
def doc() -> dict[str, Any]:
    return copy.deepcopy(POLICY)


def _error(doc: object, home) -> FieldError:
    with pytest.raises(FieldError) as info:
        parse_policy(doc, home)
    return info.value


def test_qos_and_rates_parse_and_round_trip(home, doc):
    policy = parse_policy(doc, home)
    assert policy.traffic_class("voice").qos == ClassQos(46, REALTIME, 2000)
    assert policy.traffic_class("bulk").qos == ClassQos(8, 5, None)
    assert policy.default.qos == ClassQos(0)
    # Rates are kept in uplink order, whatever order the client sent.
    assert policy.rates == (("ispA", IspRates(100000, 20000)), ("ispB", IspRates(50000, 10000)))
    assert parse_policy(policy_to_json(policy), home) == policy


def test_without_qos_a_class_trusts_hosts_and_takes_the_default_share(home, doc):
    del doc["classes"][1]["qos"], doc["rates"]
    policy = parse_policy(doc, home)
    assert policy.traffic_class("bulk").qos == ClassQos(TRUST, 10, None)
    assert policy.isp_rates("ispA") == IspRates()


@pytest.mark.parametrize("where, qos, words", [
    ("classes[0].qos.dscp", {"priority": "realtime"}, "must set its DSCP"),
    ("classes[0].qos.dscp", {"dscp": 64, "priority": "realtime"}, "out of range 0..63"),
    ("classes[0].qos.dscp", {"dscp": "ef"}, "an integer or 'trust'"),
    ("classes[0].qos.priority", {"dscp": 46, "priority": 0}, "out of range 1..100"),
    ("classes[0].qos.priority", {"dscp": 46, "priority": True}, "'realtime' or a weight"),
    ("classes[0].qos.max_rate_kbps", {"max_rate_kbps": 1}, "out of range"),
    ("classes[0].qos.colour", {"colour": "red"}, "unknown field"),
    ("classes[0].qos", [], "must be an object"),
    # bulk sets DSCP 8 with weight 5: one DSCP is one queue.
    ("classes[1].qos.priority", {"dscp": 8, "priority": "realtime"}, "one DSCP is one queue"),
])
def test_bad_qos_names_its_field(home, doc, where, qos, words):
    doc["classes"][0]["qos"] = qos
    err = _error(doc, home)
    assert (err.where, words in err.problem) == (where, True), str(err)


@pytest.mark.parametrize("where, rates, words", [
    ("rates.ispC", {"ispC": {"down_kbps": 1000}}, "unknown ISP"),
    ("rates.ispA.down_kbps", {"ispA": {"down_kbps": "fast"}}, "must be an integer"),
    ("rates.ispA.up_kbps", {"ispA": {"up_kbps": 10**30}}, "a huge integer"),
    ("rates.ispA.burst", {"ispA": {"burst": 1}}, "unknown field"),
    ("rates", [], "must be an object"),
])
def test_bad_rates_name_their_field(home, doc, where, rates, words):
    doc["rates"] = rates
    err = _error(doc, home)
    assert (err.where, words in err.problem) == (where, True), str(err)


def test_rates_come_from_the_config_unless_the_policy_gives_them(reference_data, doc):
    data = copy.deepcopy(reference_data)
    data["homenets"][0]["uplinks"][1].update(down_kbps=50000, up_kbps=10000)
    configured = parse_config(data).homenet("home1")
    assert default_policy(configured).isp_rates("ispB") == IspRates(50000, 10000)
    del doc["rates"]
    assert parse_policy(doc, configured).rates == (("ispB", IspRates(50000, 10000)),)
    doc["rates"] = {"ispA": {"up_kbps": 1000}}
    assert parse_policy(doc, configured).isp_rates("ispB") == IspRates()


def test_bad_configured_rates_name_their_field(reference_data):
    data = copy.deepcopy(reference_data)
    data["homenets"][0]["uplinks"][0]["up_kbps"] = -5
    with pytest.raises(FieldError) as info:
        parse_config(data)
    assert info.value.where == "homenets[0].uplinks[0].up_kbps"
