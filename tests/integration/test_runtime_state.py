"""Homenets and policies changed at run time, with the real controller and switches: a
policy survives a controller restart (traffic keeps following it, no packet lost); a homenet
created by REST is programmed at the edges, and deleting it removes it everywhere."""
from __future__ import annotations

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS
pytest.importorskip("mininet")

from bench.common import DEFAULT_POLICY, api
from topologies.controller import wait_for
from topologies.measure import H1_4, SERVER4, UdpStream, wait_reachable
from topologies.scenario import REPO, carries_traffic, running, wait_path

B_FIRST = {"egress": {"mode": "failover", "order": ["ispB", "ispA"]},
           "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}}
SPARE_PREFIX = "198.18.209.0/24"  # unused by the reference topology


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("msp"))
    with running(run_dir) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        yield net, controller


def all_reconciled(controller) -> bool:
    status, health = api(controller, "GET", "/api/v1/health")
    return status == 200 and all(s["reconciled"] for s in health["switches"].values())


def test_a_stored_policy_survives_a_controller_restart_without_loss(msp):
    net, controller = msp
    status, _ = api(controller, "PUT", "/api/v1/homenets/home1/policy", {"classes": [], "default": B_FIRST})
    assert status == 200
    wait_path(net, "ispB")
    up = UdpStream(net["h1"], net["server"], SERVER4, 5301, 12.0, rate=200)
    down = UdpStream(net["server"], net["h1"], H1_4, 5302, 12.0, rate=200)
    up.start()
    down.start()
    try:
        controller.stop()
        controller.start()
        wait_for(lambda: all_reconciled(controller), 30, interval=0.2, what="the switches to be reconciled")
        results = (up.result(), down.result())
    finally:
        up.stop()
        down.stop()
    for stream in results:
        assert stream.lost == 0, stream
    assert api(controller, "GET", "/api/v1/homenets/home1/policy")[1]["default"]["egress"]["order"] == ["ispB", "ispA"]
    # Reconciled to the stored policy, not to the config's default: traffic stays on ISP B.
    assert carries_traffic(net, "ispB") and not carries_traffic(net, "ispA")
    assert api(controller, "PUT", "/api/v1/homenets/home1/policy", {"classes": [], "default": DEFAULT_POLICY})[0] == 200
    wait_path(net, "ispA")


def _spare_homenet() -> dict:
    return {"name": "home9", "id": 9, "datapath_id": 0x901, "prefixes": [SPARE_PREFIX],
            "lan_ports": ["lan1"], "lan_ipv4": "198.18.209.1/24", "edges": ["edge1", "edge2"],
            "uplinks": [{"name": "ispA", "port": "up-a", "underlay_datapath_id": 0x911},
                        {"name": "ispB", "port": "up-b", "underlay_datapath_id": 0x912}],
            "egress_order": ["ispA", "ispB"], "ingress_order": ["ispA", "ispB"]}


def _edge_flows_for(net, prefix: str) -> list[str]:
    address = prefix.split("/")[0]
    return [line for line in net["edge1"].ofctl("dump-flows", "br-msp").splitlines() if address in line]


def test_a_homenet_created_by_rest_is_programmed_then_deleted_everywhere(msp):
    net, controller = msp
    clash = dict(_spare_homenet(), prefixes=["198.51.100.128/25"], lan_ipv4="198.51.100.129/25")
    status, answer = api(controller, "POST", "/api/v1/homenets", clash)
    assert status == 400 and answer["error"]["where"] == "homenet.prefixes[0]"
    assert "home1" in answer["error"]["message"] and _edge_flows_for(net, "198.51.100.128/25") == []

    status, answer = api(controller, "POST", "/api/v1/homenets", _spare_homenet())
    assert status == 201 and answer["applied"] is True, answer
    assert _edge_flows_for(net, SPARE_PREFIX)  # its part at the edge, before its box ever connects
    home = api(controller, "GET", "/api/v1/homenets/home9")[1]
    assert home["announced_at"] == []  # no tunnel of it is up: nothing is promised to the Internet
    assert [h["name"] for h in api(controller, "GET", "/api/v1/homenets")[1]] == ["home1", "home9"]

    # The edges' other flows are untouched and home1 still works.
    assert carries_traffic(net, "ispA")
    status, answer = api(controller, "DELETE", "/api/v1/homenets/home9")
    assert status == 200 and answer["deleted"] == "home9"
    assert _edge_flows_for(net, SPARE_PREFIX) == []
    assert api(controller, "GET", "/api/v1/homenets/home9")[0] == 404
    assert carries_traffic(net, "ispA")


def test_the_api_wants_a_token_and_owners_see_only_their_homenet(msp):
    _, controller = msp
    owner = (REPO / "etc" / "reference-home1.token").read_text().strip()
    status, answer = api(controller, "GET", "/api/v1/health", token="")
    assert status == 401 and answer["error"]["status"] == 401
    assert api(controller, "GET", "/api/v1/health", token="not-a-token")[0] == 401
    assert api(controller, "GET", "/api/v1/health", token=owner)[0] == 403
    assert api(controller, "GET", "/api/v1/homenets/home1", token=owner)[0] == 200
    status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy", {"classes": [], "default": DEFAULT_POLICY},
                         token=owner)
    assert status == 200 and answer["applied"] is True
    assert api(controller, "DELETE", "/api/v1/homenets/home1", token=owner)[0] == 403
    assert api(controller, "GET", "/api/v1/openapi.json", token="")[0] == 200
