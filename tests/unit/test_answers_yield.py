"""Long REST answers let the controller's other work run (port status, BFD, probes share its
event loop): at 10,000 homenets a page of edge shaping held it 70 ms, GET /health 200 ms
(bench/api_hold.py). Each answer calls its pause every few homenets or switches."""
from __future__ import annotations

from bench.scale_configs import config_dict
from msp_controller.api.service import EDGE_SHAPING_PAGE, EDGE_SHAPING_PAUSE_EVERY, CoreService
from msp_controller.core import MspCore
from msp_controller.core.switch_report import PAUSE_EVERY as SWITCH_PAUSE_EVERY
from msp_controller.core.view import READER_PAUSE_EVERY
from msp_controller.model.config import parse_config

HOMENETS = max(EDGE_SHAPING_PAGE, READER_PAUSE_EVERY, SWITCH_PAUSE_EVERY // 3) + 10


def _service() -> tuple[CoreService, list[int], int]:
    config = parse_config(config_dict(HOMENETS, bgp=False))
    paused: list[int] = []
    switches = 2 * len(config.edges) + 3 * HOMENETS  # each edge and its underlay; each box and its two
    return CoreService(MspCore(config), lambda effects: [], pause=lambda: paused.append(1)), paused, switches


def test_a_page_of_edge_shaping_yields_every_few_homenets():
    service, paused, _ = _service()
    first = service.edge_shaping(service.core.config.edges[0].name, None)
    assert len(first["homenets"]) == EDGE_SHAPING_PAGE and first["next"]
    assert len(paused) == EDGE_SHAPING_PAGE // EDGE_SHAPING_PAUSE_EVERY


def test_health_and_the_homenet_list_yield_every_few_homenets_and_switches():
    service, paused, switches = _service()
    health = service.health()
    assert sum(n for states in health["switch_counts"].values() for n in states.values()) == switches
    assert sum(health["paths"].values()) == 4 * HOMENETS
    assert len(paused) == HOMENETS // READER_PAUSE_EVERY + switches // SWITCH_PAUSE_EVERY
    paused.clear()
    assert len(service.list_homenets()) == HOMENETS
    assert len(paused) == HOMENETS // READER_PAUSE_EVERY
