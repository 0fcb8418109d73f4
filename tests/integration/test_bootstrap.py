"""Zero configuration, end to end (topologies/blank_box.py): a blank MSPMB leases its
uplinks from the ISPs' DHCP servers, dials the MSP's OVSDB manager over TLS across an ISP,
and is given its tunnels and BFD; it stays provisioned through a missing DHCP server, a
renumbering and the loss of the ISP that carries its control channel."""
from __future__ import annotations

import os
import time

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS

MULTIHOMED_S = 10.0  # the target, from the box's start


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


def test_a_blank_box_is_multihomed_within_ten_seconds_with_tunnels_at_its_leased_addresses(bb):
    from topologies.blank_box import BOX

    assert bb[BOX].vsctl("list-br").split() == []  # blank: not even a bridge
    started = bb.start_box()
    _wait(lambda: all(bb.box_tunnels_up().values()), MULTIHOMED_S, "both ISPs' tunnels up (BFD)")
    assert time.monotonic() - started <= MULTIHOMED_S
    assert {isp: bb.edge_remote(isp) for isp in ("ispA", "ispB")} == \
        {"ispA": bb.address("ispA", 100), "ispB": bb.address("ispB", 100)}
    assert "br-home" in bb[BOX].vsctl("list-br").split()


def test_an_isp_whose_dhcp_server_is_down_at_boot_joins_once_it_returns(bb):
    bb.dhcp["ispB"].stop()
    bb.start_box()
    _wait(lambda: bb.box_tunnels_up()["ispA"], MULTIHOMED_S, "ISP A's tunnel up")
    assert not bb.box_tunnels_up()["ispB"] and bb.edge_remote("ispB") is None
    bb.dhcp["ispB"].start()
    _wait(lambda: all(bb.box_tunnels_up().values()), 15, "ISP B's tunnel up once its DHCP server is back")
    assert bb.edge_remote("ispB") == bb.address("ispB", 100)


def test_a_renumbered_uplink_carries_its_tunnel_again_within_a_second_of_the_new_lease(bb):
    from topologies.blank_box import BOX, EDGE

    bb.start_box()
    _wait(lambda: all(bb.box_tunnels_up().values()), MULTIHOMED_S, "multihomed")
    new = bb.address("ispA", 101)
    bb.dhcp["ispA"].renumber(bb.uplink_mac("ispA"), new)
    probe = bb.start_probe("ispA")
    before = bb.edge_rx_packets("ispA")
    _wait(lambda: bb.edge_rx_packets("ispA") > before + 100, 5, "the probe reaching the edge over ISP A")
    bb.renew("ispA")
    _wait(lambda: new in bb[BOX].vsctl("--if-exists", "get", "open_vswitch", ".",
                                       "external_ids:msp-lease-br-ispA", timeout=2), 10, "the new lease")
    leased = time.monotonic()
    rx = bb.edge_rx_packets("ispA")
    _wait(lambda: bb.edge_remote("ispA") == new and bb.edge_rx_packets("ispA") > rx, 5,
          "the edge's tunnel taking the box's packets from the new address")
    assert time.monotonic() - leased <= 1.0
    # BFD, down since the NAK, sends once a second until it is up again (RFC 5880).
    _wait(lambda: bb.bfd_up(BOX, "edge1-ispA") and bb.bfd_up(EDGE, "hn1-ispA"), 3, "BFD up on ISP A")
    bb.stop_probe(probe)
    assert bb.box_tunnels_up()["ispB"]


def test_losing_the_control_channels_isp_moves_it_to_the_other_within_seconds(bb):
    bb.start_box()
    _wait(lambda: all(bb.box_tunnels_up().values()) and bb.agent_status().get("control_uplink"),
          MULTIHOMED_S, "multihomed with a control channel")
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
