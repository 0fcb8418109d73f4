"""BGP end to end: the controller announces the PI prefixes from two edges to real BIRD
routers; losing edge1 moves the Internet's route and the traffic to edge2, and back.
"""
from __future__ import annotations

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS
pytest.importorskip("mininet")

from bench.common import api, homenet
from topologies.bird import routes
from topologies.controller import wait_for
from topologies.faults import start_edge, stop_edge
from topologies.measure import H1_4, H1_6, SERVER4, SERVER6, TcpTransfer, wait_reachable

PI4, PI6 = "198.51.100.0/24", "2001:db8:100::/48"
UP1_AS, UP2_AS, MSP_AS = 64501, 64502, 65000


def core_routes(net, prefix: str) -> dict[int, tuple[int, ...]]:
    """The Internet core's routes for a PI prefix: first AS (the upstream) -> AS path; best first."""
    found = sorted(routes(net["inet"], prefix, exact=True), key=lambda r: not r.primary)
    return {r.as_path[0]: r.as_path for r in found if r.as_path}


def best_upstream(net, prefix: str) -> int | None:
    best = [r for r in routes(net["inet"], prefix, exact=True) if r.primary and r.as_path]
    return best[0].as_path[0] if best else None


def test_core_reaches_the_pi_prefixes_via_edge1_with_edge2_as_backup(msp):
    net, controller = msp
    # backup_prepend = 2 at edge2. Waited for as a whole: while the tunnels come up, an edge
    # whose tunnels are not known live yet withdraws and is held down for hold_down_s.
    expected = {UP1_AS: (UP1_AS, MSP_AS), UP2_AS: (UP2_AS, MSP_AS, MSP_AS, MSP_AS)}
    for prefix in (PI4, PI6):
        wait_for(lambda prefix=prefix: core_routes(net, prefix) == expected and best_upstream(net, prefix) == UP1_AS,
                 30, interval=0.2, what=f"the core to learn {prefix} from both upstreams, preferring up1")
    status, health = api(controller, "GET", "/api/v1/health")
    assert health["bgp"] == {"198.19.0.11": "established", "198.19.0.12": "established"}, health
    assert homenet(controller)["announced_at"] == ["edge1", "edge2"]


def test_losing_edge1_moves_traffic_to_edge2_and_tcp_survives(msp):
    net, controller = msp
    wait_for(lambda: best_upstream(net, PI4) == UP1_AS, 30, what="edge1 to be the best path")
    transfer = TcpTransfer(net["server"], net["h1"], H1_4, seconds=8, bitrate="20M", port=5601)
    transfer.start()
    stop_edge(net, "edge1")
    try:
        for prefix in (PI4, PI6):
            wait_for(lambda prefix=prefix: set(core_routes(net, prefix)) == {UP2_AS}, 10, interval=0.05,
                     what=f"{prefix} to be reachable via edge2 only")
        assert homenet(controller)["announced_at"] == ["edge2"]
        for source, destination in (("h1", SERVER4), ("h1", SERVER6), ("server", H1_4), ("server", H1_6)):
            wait_reachable(net[source], destination, timeout=10)
        result = transfer.result()
        assert result.survived, result  # the edges keep no per-connection state
    finally:
        transfer.stop()
        start_edge(net, "edge1")
    # Recovery: edge1 announces again once it has been healthy for the hold-down (5 s).
    for prefix in (PI4, PI6):
        wait_for(lambda prefix=prefix: best_upstream(net, prefix) == UP1_AS, 40, interval=0.2,
                 what=f"{prefix} back via edge1")
    wait_reachable(net["server"], H1_4, timeout=10)
