"""A box's uplink address, as its ISP leased it: where the edges' tunnels end. Reported at
run time (a new lease), it is validated, stored before it is applied, survives a restart,
and moves only that uplink's tunnels."""
from __future__ import annotations

import ipaddress

import pytest

from msp_controller.api.rest import NotFound
from msp_controller.api.service import CoreService
from msp_controller.core import load_core
from msp_controller.model.errors import FieldError
from msp_controller.store import MemoryStore
from msp_controller.store.sqlite import SqliteStore
from tests.harness import EDGE, UPSTREAM_MAC, Harness, udp4

INTERNET, TUNNEL_A, TUNNEL_B = 1, 11, 12
SERVER4, H1_4 = "203.0.113.10", "198.51.100.10"


def _service(net: Harness, store) -> CoreService:
    def confirm(effects):
        net.apply(effects)
        return []
    return CoreService(net.core, confirm, clock=lambda: net.now, store=store)


def _inbound(net: Harness) -> list[tuple[int, str]]:
    packet = udp4(SERVER4, H1_4, UPSTREAM_MAC, net.config.edge("edge1").internet_mac)
    return [(o.port, o.packet["tun_ipv4_dst"]) for o in net.switch(EDGE).process(INTERNET, packet)]


def test_a_new_lease_moves_the_edges_end_of_that_uplink_only(net):
    service = _service(net, MemoryStore())
    before_b = [f for f in net.switch(EDGE).flows() if "198.18.2.2" in str(f.ofp_match)]
    result = service.set_uplink_address("home1", "ispA", "100.64.7.9")
    assert result["applied"] and result["address"] == "100.64.7.9"
    assert _inbound(net) == [(TUNNEL_A, "100.64.7.9")]
    assert [f for f in net.switch(EDGE).flows() if "198.18.2.2" in str(f.ofp_match)] == before_b


@pytest.mark.parametrize("address", ["224.0.0.5", "0.0.0.0", "127.0.0.1", "169.254.3.3", "240.0.0.1",
                                     "2001:db8::1", "not an address", 17])
def test_a_bad_address_is_refused_and_changes_nothing(net, address):
    store = MemoryStore()
    service = _service(net, store)
    with pytest.raises(FieldError, match="address"):
        service.set_uplink_address("home1", "ispA", address)
    assert _inbound(net) == [(TUNNEL_A, "198.18.1.2")]
    assert store.load().uplink_addresses == {}


def test_an_unknown_homenet_or_uplink_is_not_found(net):
    service = _service(net, MemoryStore())
    with pytest.raises(NotFound):
        service.set_uplink_address("home9", "ispA", "198.18.1.7")
    with pytest.raises(NotFound):
        service.set_uplink_address("home1", "ispZ", "198.18.1.7")


def test_without_an_address_the_edge_cannot_use_the_uplink(net):
    service = _service(net, MemoryStore())
    service.set_uplink_address("home1", "ispA", None)
    assert _inbound(net) == [(TUNNEL_B, "198.18.2.2")]  # ISP B takes over, from the controller


def test_the_reported_address_survives_a_restart(net, config, tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = SqliteStore(path)
    _service(net, store).set_uplink_address("home1", "ispB", "10.20.30.40")
    store.close()
    again = SqliteStore(path)
    core = load_core(config, again.load())
    assert core.homenets["home1"].spec.uplink("ispB").address == ipaddress.IPv4Address("10.20.30.40")
    assert core.homenets["home1"].spec.uplink("ispA").address == ipaddress.IPv4Address("198.18.1.2")
    again.close()
