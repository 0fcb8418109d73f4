"""Zero configuration, end to end (topologies/blank_box.py): a blank MSPMB leases its
uplinks from the ISPs' DHCP servers, dials the MSP's OVSDB manager over TLS across an ISP,
and is given its tunnels and BFD; the controller (OpenFlow over TLS) programs it and the
edge, whose tunnel ends follow the leases; the host behind it gets its address by DHCP from
the controller and reaches the server. It stays so through a missing DHCP server, a
renumbering and the loss of the ISP that carries its control channel."""
from __future__ import annotations

import ipaddress
import os
import time

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS

MULTIHOMED_S = 10.0  # the target, from the box's start
RENUMBER_S = 1.0


@pytest.fixture
def bb(tmp_path):
    pytest.importorskip("mininet")
    from topologies.blank_box import BlankBoxNetwork

    run_dir = str(tmp_path / "bb")
    with BlankBoxNetwork(run_dir) as network:
        yield network


def _wait(condition, timeout, what):
    from topologies.ovsbox import wait_for
    return wait_for(condition, timeout, interval=0.02, what=what)


def test_a_blank_box_is_multihomed_within_ten_seconds_and_its_dhcp_host_reaches_the_server(bb):
    from topologies.blank_box import BOX

    assert bb[BOX].vsctl("list-br").split() == []  # blank: not even a bridge
    assert bb.host_address() is None  # and the host has no address
    started = bb.start_box()
    answered = bb.wait_host_reaches_server(20)
    multihomed = bb.wait_multihomed(MULTIHOMED_S)
    assert multihomed - started <= MULTIHOMED_S
    assert answered > started
    host = ipaddress.IPv4Interface(bb.host_address())
    settings = bb.homenet.autoconf
    assert settings.pool_start <= host.ip <= settings.pool_end and host.network == bb.homenet.lan_ipv4.network
    # The edge's ends of the tunnels are the leased addresses (the controller's flows).
    assert {isp: bb.edge_address(isp) for isp in ("ispA", "ispB")} == \
        {"ispA": bb.address("ispA", 100), "ispB": bb.address("ispB", 100)}
    assert "br-home" in bb[BOX].vsctl("list-br").split()


def test_an_isp_whose_dhcp_server_is_down_at_boot_joins_once_it_returns(bb):
    bb.dhcp["ispB"].stop()
    bb.start_box()
    bb.wait_host_reaches_server(20)  # over ISP A alone
    _wait(lambda: bb.box_tunnels_up()["ispA"] and bb.paths_live().get("ispA"), MULTIHOMED_S, "ISP A's tunnel up")
    assert not bb.box_tunnels_up()["ispB"] and bb.edge_address("ispB") is None
    assert not bb.paths_live().get("ispB")
    bb.dhcp["ispB"].start()
    bb.wait_multihomed(15)  # udhcpc asks again every few seconds
    assert bb.edge_address("ispB") == bb.address("ispB", 100)


def test_a_renumbered_uplink_carries_its_tunnel_again_within_a_second_of_the_new_lease(bb):
    from bench.bootstrap import renumber

    bb.start_box()
    bb.wait_multihomed(MULTIHOMED_S)
    result = renumber(bb)  # ISP A: NAK at renewal, 198.18.41.101; probes into both tunnels
    # The edge's flows follow the new lease, and traffic from the new address gets through
    # it, within the target; the other ISP loses nothing.
    assert result["renumber_edge_follow_ms"] <= RENUMBER_S * 1000, result
    assert result["renumber_outage_ms"] <= RENUMBER_S * 1000, result
    assert result["other_isp_lost_packets"] == 0 and result["other_isp_bfd_flaps"] == 0, result
    # BFD, down since the NAK, sends once a second until it is up again (RFC 5880 6.8.3):
    # its first packet and the next, plus slack for a busy machine.
    assert result["renumber_bfd_up_ms"] <= 3500, result
    assert bb.edge_address("ispA") == bb.address("ispA", 101)
    bb.wait_host_reaches_server(10)


def test_losing_the_control_channels_isp_moves_it_to_the_other_within_seconds(bb):
    bb.start_box()
    bb.wait_multihomed(MULTIHOMED_S)
    _wait(lambda: bb.agent_status().get("control_uplink"), 5, "a control channel")
    _wait(bb.manager_connected, 10, "the box connected to the manager")
    isp = bb.agent_status()["control_uplink"].removeprefix("br-")
    other = "ispB" if isp == "ispA" else "ispA"
    log = os.path.join(bb.run_dir, "manager.log")
    mark = f"connected from {bb.address(other, 100)}"
    before = open(log).read().count(mark)
    cut = time.monotonic()
    bb.isp_blackhole(isp)
    _wait(lambda: open(log).read().count(mark) > before, 5, f"the box back at the manager over {other}")
    assert time.monotonic() - cut <= 5.0
    assert bb.box_tunnels_up()[other]
    # The data plane failed over meanwhile: the host still reaches the server, over the other ISP.
    bb.wait_host_reaches_server(10)


def _shaped_kbit(bb, port: str) -> str | None:
    """The rate of the box's top HTB class on an uplink port (1:1), or None when unshaped."""
    import re

    from topologies.blank_box import BOX
    from topologies.ovsbox import run
    out = run(["tc", "class", "show", "dev", port], bb[BOX], check=False)
    match = re.search(r"class htb 1:1 root rate (\S+)", out)
    return match.group(1) if match else None


def test_isp_rates_set_over_rest_shape_the_boxs_uplink_and_a_refused_policy_changes_nothing(bb):
    bb.start_box()
    bb.wait_multihomed(MULTIHOMED_S)
    assert _shaped_kbit(bb, "bbmb-ispA") is None  # no rates known: not shaped
    policy = bb.rest("GET", "/homenets/home1/policy")
    policy["rates"] = {"ispA": {"down_kbps": 100000, "up_kbps": 20000}}
    assert "policy" in bb.rest("PUT", "/homenets/home1/policy", policy)
    # the store -> the OVSDB manager -> br-home's external_ids -> the box's agent -> tc
    _wait(lambda: _shaped_kbit(bb, "bbmb-ispA") == "19400Kbit", 10, "ISP A's uplink shaped at 97 % of 20 Mbit/s")
    assert _shaped_kbit(bb, "bbmb-ispB") is None
    policy["rates"]["ispA"]["up_kbps"] = 10000
    bb.rest("PUT", "/homenets/home1/policy", policy)
    _wait(lambda: _shaped_kbit(bb, "bbmb-ispA") == "9700Kbit", 10, "the new rate")
    refused = {**policy, "rates": {"ispA": {"up_kbps": -5}}}
    error = bb.rest("PUT", "/homenets/home1/policy", refused)
    assert "rates.ispA.up_kbps" in str(error), error
    assert bb.rest("GET", "/homenets/home1/policy")["rates"]["ispA"]["up_kbps"] == 10000
    # Changes arrive in order: once a later one (ISP B) is applied, the refused one would have been.
    policy["rates"]["ispB"] = {"up_kbps": 5000}
    bb.rest("PUT", "/homenets/home1/policy", policy)
    _wait(lambda: _shaped_kbit(bb, "bbmb-ispB") == "4850Kbit", 10, "ISP B's uplink shaped")
    assert _shaped_kbit(bb, "bbmb-ispA") == "9700Kbit"
    bb.wait_host_reaches_server(10)  # shaped, the box still carries its host's traffic


def test_down_rates_set_over_rest_shape_that_homenet_at_the_edge(bb):
    """The edge's shaper follows the controller: a homenet's down rates become its classes on
    the edge's underlay port, a change replaces them, a refused policy changes nothing."""
    import re

    from msp_controller.dataplane.shaping import edge_pair_class
    from topologies.blank_box import EDGE
    from topologies.ovsbox import run

    port = bb.config.edge("edge1").underlay_port
    pair_a, pair_b = (edge_pair_class(1, slot) for slot in (0, 1))

    def rate(classid: str) -> str | None:
        out = run(["tc", "class", "show", "dev", port, "classid", classid], bb[EDGE], check=False)
        match = re.search(r"rate (\S+)", out)
        return match.group(1) if match else None

    bb.start_edge_shaper()
    _wait(lambda: "htb 1: root" in run(["tc", "qdisc", "show", "dev", port], bb[EDGE], check=False), 10,
          "the edge's base shaping")
    assert rate(pair_a) is None  # no rates known yet: home1 is not shaped
    policy = bb.rest("GET", "/homenets/home1/policy")
    policy["rates"] = {"ispA": {"down_kbps": 100000}, "ispB": {"down_kbps": 50000}}
    assert "policy" in bb.rest("PUT", "/homenets/home1/policy", policy)
    _wait(lambda: rate(pair_a) == "97Mbit" and rate(pair_b) == "48500Kbit", 10, "home1's classes at the edge")
    policy["rates"] = {"ispA": {"down_kbps": 20000}}
    bb.rest("PUT", "/homenets/home1/policy", policy)
    _wait(lambda: rate(pair_a) == "19400Kbit" and rate(pair_b) is None, 10, "the new rates (ISP B unshaped)")
    error = bb.rest("PUT", "/homenets/home1/policy", {**policy, "rates": {"ispA": {"down_kbps": 0}}})
    assert "rates.ispA.down_kbps" in str(error), error
    policy["rates"]["ispB"] = {"down_kbps": 30000}  # a later change: once it is there, the refused one would be
    bb.rest("PUT", "/homenets/home1/policy", policy)
    _wait(lambda: rate(pair_b) == "29100Kbit", 10, "ISP B shaped again")
    assert rate(pair_a) == "19400Kbit"


def test_an_isp_that_offers_ipv6_gives_the_box_an_address_by_slaac_and_one_that_does_not_none(bb):
    from topologies.blank_box import BOX, IPV6_PREFIXES
    from topologies.ovsbox import run

    bb.start_box()
    bb.wait_multihomed(MULTIHOMED_S)  # the tunnels on the IPv4 leases, as before
    prefix = IPV6_PREFIXES["ispA"].split("::")[0] + ":"  # "2001:db8:41:"
    _wait(lambda: bb.lease6("ispA").startswith(prefix), 15, "ISP A's IPv6 address (SLAAC) in the box's OVSDB")
    address = bb.lease6("ispA")
    assert address.endswith("/64") and bb.agent_status().get("addresses6") == {"br-ispA": address}
    assert address.split("/")[0] in run(["ip", "-6", "addr", "show", "dev", "br-ispA"], bb[BOX])
    assert "dev br-ispA" in run(["ip", "-6", "route", "show", "default"], bb[BOX])  # ISP A's router
    assert bb.lease6("ispB") == ""  # ISP B offers IPv4 only
