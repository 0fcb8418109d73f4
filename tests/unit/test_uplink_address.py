"""A box's uplink address, as its ISP leased it: where the edges' tunnels end. Reported at
run time (a new lease), it is validated, stored before it is applied, survives a restart,
and moves only that uplink's tunnels."""
from __future__ import annotations

import ipaddress
import json

import pytest
import webob

from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.openapi import API_PREFIX
from msp_controller.api.rest import NotFound, RestApi
from msp_controller.api.service import CoreService
from msp_controller.core import load_core
from msp_controller.model.access import ApiToken, Role
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


# --- by REST: the operator (or the box's agent with the operator's role) ----------------------

OPERATOR, OWNER = "op-token", "owner-token"


def _api(net: Harness, store) -> RestApi:
    tokens = (ApiToken("operator", Role.OPERATOR, digest(OPERATOR), None),
              ApiToken("home1-owner", Role.OWNER, digest(OWNER), "home1"))
    return RestApi(_service(net, store), Authorizer(tokens))


def _put(api: RestApi, path: str, body: object, token: str = OPERATOR) -> webob.Response:
    request = webob.Request.blank(path, method="PUT", body=json.dumps(body).encode())
    request.headers["Content-Type"] = "application/json"
    request.headers["Authorization"] = f"Bearer {token}"
    return api.handle(request)


UPLINK_A = f"{API_PREFIX}/homenets/home1/uplinks/ispA"


def test_rest_sets_an_address_and_refuses_what_is_wrong(net):
    store = MemoryStore()
    api = _api(net, store)
    answer = _put(api, UPLINK_A, {"address": "100.64.1.2"})
    assert answer.status_int == 200 and answer.json["address"] == "100.64.1.2"
    assert _inbound(net) == [(TUNNEL_A, "100.64.1.2")]
    for body, status in (({"address": "300.1.1.1"}, 400), ({"addr": "1.2.3.4"}, 400), ({}, 400),
                         ({"address": "1.2.3.4", "more": 1}, 400)):
        answer = _put(api, UPLINK_A, body)
        assert answer.status_int == status and answer.json["error"]["where"].startswith("address"), body
    assert _put(api, f"{API_PREFIX}/homenets/home1/uplinks/ispZ", {"address": "1.2.3.4"}).status_int == 404
    assert _put(api, UPLINK_A, {"address": "1.2.3.4"}, token=OWNER).status_int == 403  # owners may not
    assert _put(api, UPLINK_A, {"address": "1.2.3.4"}, token="nonsense").status_int == 401
    assert _inbound(net) == [(TUNNEL_A, "100.64.1.2")]  # none of those changed anything
    assert store.load().uplink_addresses == {("home1", "ispA"): "100.64.1.2"}
