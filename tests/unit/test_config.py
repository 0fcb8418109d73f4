"""Config validation: good files load; each bad one is refused with the field named."""
from __future__ import annotations

import copy
import ipaddress
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from msp_controller.model.config import load_config, parse_config
from msp_controller.model.errors import FieldError
from tests.conftest import REFERENCE_CONFIG


def test_reference_config_loads(config):
    home = config.homenet("home1")
    assert home.prefixes == (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:100::/48"))
    assert home.egress_order == ("ispA", "ispB")
    assert [u.slot for u in home.uplinks] == [0, 1]
    assert config.edge("edge1").tunnel_ip(1) == ipaddress.ip_address("198.18.10.12")
    assert config.bfd_interval_ms == 30


def test_orders_default_to_uplink_order(reference_data):
    del reference_data["homenets"][0]["egress_order"]
    del reference_data["homenets"][0]["ingress_order"]
    home = parse_config(reference_data).homenet("home1")
    assert home.egress_order == home.ingress_order == ("ispA", "ispB")


def test_derived_macs_are_unicast_and_locally_administered(config):
    for mac in (config.homenet("home1").gateway_mac, config.edge("edge1").internet_mac):
        first = int(mac[:2], 16)
        assert first & 1 == 0 and first & 2 == 2


def test_config_is_frozen(config):
    with pytest.raises(AttributeError):
        config.homenet("home1").name = "other"  # type: ignore[misc]


def _home(data: dict) -> dict:
    return data["homenets"][0]


def _edge(data: dict) -> dict:
    return data["edges"][0]


def _set(getter: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        getter(data)[key] = value
    return change


def _delete(getter: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        del getter(data)[key]
    return change


def _second_homenet(**overrides: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        other = copy.deepcopy(_home(data))
        other.update(name="home2", id=2, datapath_id=0x201, prefixes=["203.0.113.0/25"],
                     lan_ipv4="203.0.113.1/25")
        del other["lan_ipv6"]
        for i, uplink in enumerate(other["uplinks"]):
            uplink["underlay_datapath_id"] = 0x211 + i
        other.update(overrides)
        data["homenets"].append(other)
    return change


BAD_CONFIGS = {
    # (change, field the error must name, words the message must contain)
    "unknown top-level key": (_set(lambda d: d, "edgez", []), "edgez", "unknown field"),
    "unknown homenet key": (_set(_home, "prefix", ["10.0.0.0/8"]), "homenets[0].prefix", "unknown field"),
    "unknown msp key": (_set(lambda d: d["msp"], "bfd_ms", 5), "msp.bfd_ms", "unknown field"),
    "bfd too small": (_set(lambda d: d["msp"], "bfd_interval_ms", 1), "msp.bfd_interval_ms", "out of range"),
    "bfd not int": (_set(lambda d: d["msp"], "bfd_interval_ms", "30"), "msp.bfd_interval_ms", "integer"),
    "bfd bool": (_set(lambda d: d["msp"], "bfd_interval_ms", True), "msp.bfd_interval_ms", "integer"),
    "bad controller address": (_set(lambda d: d["msp"], "controller_address", "ctl"), "msp.controller_address", "not an IP"),
    "no edges": (_set(lambda d: d, "edges", []), "edges", "non-empty"),
    "no homenets": (_delete(lambda d: d, "homenets"), "homenets", "required"),
    "edge name too long": (_set(_edge, "name", "edge-number-one"), "edges[0].name", "does not match"),
    "edge dpid zero": (_set(_edge, "datapath_id", 0), "edges[0].datapath_id", "datapath id"),
    "edge dpid text": (_set(_edge, "datapath_id", "edge"), "edges[0].datapath_id", "datapath id"),
    "edge dpid huge": (_set(_edge, "datapath_id", 2**64), "edges[0].datapath_id", "datapath id"),
    "bad tunnel address": (_set(_edge, "tunnel_addresses", ["198.18.10.300/24"]), "edges[0].tunnel_addresses[0]", "not a valid"),
    "duplicate tunnel address": (_set(_edge, "tunnel_addresses", ["198.18.10.11/24", "198.18.10.11/24"]), "edges[0].tunnel_addresses", "duplicate"),
    "ipv6 tunnel address": (_set(_edge, "tunnel_addresses", ["2001:db8::1/64"]), "edges[0].tunnel_addresses[0]", "IPv4Interface"),
    "gateway outside subnet": (_set(_edge, "internet_gateway_ipv4", "192.0.2.9"), "edges[0].internet_gateway_ipv4", "not in"),
    "v6 gateway outside subnet": (_set(_edge, "internet_gateway_ipv6", "2001:db8:1::1"), "edges[0].internet_gateway_ipv6", "not in"),
    "v6 without gateway": (_delete(_edge, "internet_gateway_ipv6"), "edges[0].internet_gateway_ipv6", "required"),
    "bad internet mac": (_set(_edge, "internet_mac", "zz:00:00:00:00:01"), "edges[0].internet_mac", "not a MAC"),
    "multicast mac": (_set(_edge, "internet_mac", "01:00:5e:00:00:01"), "edges[0].internet_mac", "multicast"),
    "port name too long": (_set(_edge, "internet_port", "a-very-long-port-name"), "edges[0].internet_port", "does not match"),
    "missing underlay gateway": (_delete(_edge, "underlay_gateway"), "edges[0].underlay_gateway", "required"),
    "homenet id zero": (_set(_home, "id", 0), "homenets[0].id", "out of range"),
    "homenet id too big": (_set(_home, "id", 70000), "homenets[0].id", "out of range"),
    "bad homenet name": (_set(_home, "name", "home 1"), "homenets[0].name", "does not match"),
    "bad prefix": (_set(_home, "prefixes", ["198.51.100.1/24"]), "homenets[0].prefixes[0]", "not a prefix"),
    "prefix not a string": (_set(_home, "prefixes", [24]), "homenets[0].prefixes[0]", "string"),
    "empty prefixes": (_set(_home, "prefixes", []), "homenets[0].prefixes", "non-empty"),
    "overlapping prefixes": (_set(_home, "prefixes", ["198.51.100.0/24", "198.51.100.128/25"]), "homenets[0].prefixes", "overlaps"),
    "ipv6 only": (_set(_home, "prefixes", ["2001:db8:100::/48"]), "homenets[0].prefixes", "IPv4"),
    "lan outside prefixes": (_set(_home, "lan_ipv4", "192.0.2.1/24"), "homenets[0].lan_ipv4", "not inside"),
    "lan v6 outside prefixes": (_set(_home, "lan_ipv6", "2001:db8:999::1/64"), "homenets[0].lan_ipv6", "not inside"),
    "v6 prefix without lan_ipv6": (_delete(_home, "lan_ipv6"), "homenets[0].lan_ipv6", "required"),
    "unknown edge": (_set(_home, "edges", ["edge1", "edge9"]), "homenets[0].edges[1]", "unknown edge"),
    "edge and edges": (_set(_home, "edge", "edge1"), "homenets[0].edges", "not both"),
    "duplicate edges": (_set(_home, "edges", ["edge1", "edge1"]), "homenets[0].edges", "duplicate edge"),
    "no edges listed": (_set(_home, "edges", []), "homenets[0].edges", "non-empty"),
    "prepend too long": (_set(_home, "backup_prepend", 11), "homenets[0].backup_prepend", "out of range"),
    "bgp asn zero": (_set(lambda d: d["bgp"], "asn", 0), "bgp.asn", "out of range"),
    "bgp bad router id": (_set(lambda d: d["bgp"], "router_id", "me"), "bgp.router_id", "not a valid"),
    "bgp unknown key": (_set(lambda d: d["bgp"], "as", 1), "bgp.as", "unknown field"),
    "bgp bad source address": (_set(lambda d: d["bgp"], "source_address", "mgmt0"), "bgp.source_address",
                               "not a valid"),
    "api token bad role": (lambda d: d.update(api={"tokens": [{"name": "x", "role": "root", "sha256": "0" * 64}]}),
                           "api.tokens[0].role", "not a role"),
    "api owner without homenet": (lambda d: d.update(api={"tokens": [{"name": "x", "role": "owner", "sha256": "0" * 64}]}),
                                  "api.tokens[0].homenet", "required"),
    "api token not a digest": (lambda d: d.update(api={"tokens": [{"name": "x", "role": "operator", "sha256": "secret"}]}),
                               "api.tokens[0].sha256", "does not match"),
    "neighbors without bgp": (_delete(lambda d: d, "bgp"), "edges.edge1.bgp_neighbors", "needs a [bgp]"),
    "bad neighbor address": (lambda d: _edge(d)["bgp_neighbors"][0].update(address="up1"),
                             "edges[0].bgp_neighbors[0].address", "not a valid"),
    "neighbor asn too big": (lambda d: _edge(d)["bgp_neighbors"][0].update(asn=2**32),
                             "edges[0].bgp_neighbors[0].asn", "out of range"),
    "neighbor unknown key": (lambda d: _edge(d)["bgp_neighbors"][0].update(port=179),
                             "edges[0].bgp_neighbors[0].port", "unknown field"),
    "duplicate neighbor": (lambda d: _edge(d)["bgp_neighbors"].append(dict(_edge(d)["bgp_neighbors"][0])),
                           "edges[0].bgp_neighbors", "duplicate neighbor"),
    "unknown isp in egress order": (_set(_home, "egress_order", ["ispA", "ispC"]), "homenets[0].egress_order[1]", "unknown ISP"),
    "duplicate isp in ingress order": (_set(_home, "ingress_order", ["ispA", "ispA"]), "homenets[0].ingress_order", "duplicate"),
    "empty egress order": (_set(_home, "egress_order", []), "homenets[0].egress_order", "non-empty"),
    "no uplinks": (_set(_home, "uplinks", []), "homenets[0].uplinks", "non-empty"),
    "duplicate uplink name": (lambda d: _home(d)["uplinks"][1].update(name="ispA"), "homenets[0].uplinks", "duplicate uplink name"),
    "duplicate uplink port": (lambda d: _home(d)["uplinks"][1].update(port="mspmb-ispA"), "homenets[0].uplinks", "duplicate uplink port"),
    "uplink name too long": (lambda d: _home(d)["uplinks"][0].update(name="isp-alpha"), "homenets[0].uplinks[0].name", "does not match"),
    "uplink unknown key": (lambda d: _home(d)["uplinks"][0].update(mtu=1500), "homenets[0].uplinks[0].mtu", "unknown field"),
    "more uplinks than edge slots": (lambda d: _home(d)["uplinks"].append(
        {"name": "ispC", "port": "mspmb-ispC", "underlay_datapath_id": 0x113}), "homenets[0].uplinks", "tunnel_addresses"),
    "lan port is an uplink": (_set(_home, "lan_ports", ["mspmb-ispA"]), "homenets[0].lan_ports", "also an uplink"),
    "duplicate lan port": (_set(_home, "lan_ports", ["mspmb-lan1", "mspmb-lan1"]), "homenets[0].lan_ports", "duplicate"),
    "duplicate datapath id": (lambda d: _home(d).update(datapath_id=0xe1), "homenets[0].datapath_id", "taken by edge edge1"),
    "duplicate homenet name": (_second_homenet(name="home1"), "homenets[1].name", "a homenet named 'home1' exists"),
    "duplicate homenet id": (_second_homenet(id=1), "homenets[1].id", "taken by homenet 'home1'"),
    "prefix of two homenets": (_second_homenet(prefixes=["198.51.100.0/25"], lan_ipv4="198.51.100.1/25"), "homenets[1].prefixes[0]",
                               "198.51.100.0/25 overlaps 198.51.100.0/24 of homenet 'home1'"),
    "homenets not a list of tables": (_set(lambda d: d, "homenets", ["home1"]), "homenets[0]", "must be a table"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_naming_the_field(reference_data, case):
    change, where, words = BAD_CONFIGS[case]
    change(reference_data)
    with pytest.raises(FieldError) as caught:
        parse_config(reference_data)
    assert caught.value.where == where, str(caught.value)
    assert words in str(caught.value)


def test_second_homenet_is_accepted(reference_data):
    _second_homenet()(reference_data)
    assert [h.name for h in parse_config(reference_data).homenets] == ["home1", "home2"]


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(FieldError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[msp\nbfd_interval_ms = 30\n")
    with pytest.raises(FieldError, match="not valid TOML"):
        load_config(str(broken))


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "msp_controller.api.cli", str(REFERENCE_CONFIG)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(REFERENCE_CONFIG.read_text().replace('edges = ["edge1", "edge2"]', 'edges = ["edge1", "edge7"]'))
    refused = subprocess.run([sys.executable, "-m", "msp_controller.api.cli", str(bad)],
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert "homenets[0].edges[1]: unknown edge 'edge7'" in refused.stderr
