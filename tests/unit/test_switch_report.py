"""GET /health stays small at any number of switches: counts by role and state, every switch
listed only while they are few, else only those not reconciled; GET /switches lists them all
in pages, and a bad page request names its field."""
from __future__ import annotations

import pytest

from bench.scale_configs import config_dict
from msp_controller.api.service import SWITCH_PAGE, CoreService
from msp_controller.core import MspCore
from msp_controller.core import switch_report as report_module
from msp_controller.model.config import parse_config
from msp_controller.model.errors import FieldError
from tests.harness import Harness


def _service(homenets: int) -> CoreService:
    return CoreService(MspCore(parse_config(config_dict(homenets, bgp=False))), lambda effects: [])


def test_health_lists_every_switch_while_they_are_few(config):
    harness = Harness(config)
    harness.connect_all()
    service = CoreService(harness.core, harness.apply, clock=lambda: harness.now)
    health = service.health()
    assert health["switches_listed"] == "all" and health["status"] == "ok"
    assert len(health["switches"]) == sum(sum(s.values()) for s in health["switch_counts"].values())
    assert all(s["reconciled"] for s in health["switches"].values())
    assert health["switch_counts"]["mspmb"] == {"reconciled": 1, "connected": 0, "disconnected": 0}


def test_beyond_a_thousand_health_lists_only_the_switches_not_reconciled(monkeypatch):
    service = _service(20)  # 64 switches, none connected
    monkeypatch.setattr(report_module, "LISTED_ALL_UP_TO", 10)
    health = service.health()
    assert health["switches_listed"] == "not_reconciled" and health["status"] == "degraded"
    assert len(health["switches"]) == 10  # the first ten of 64 not reconciled
    assert health["switch_counts"]["mspmb"]["disconnected"] == 20
    assert health["switch_counts"]["underlay"]["disconnected"] == 2 * 20 + 2


def test_every_switch_comes_once_in_pages_by_datapath_id():
    service = _service(400)  # 1,204 switches
    seen: list[str] = []
    after = None
    while True:
        page = service.list_switches(after, None)
        assert len(page["switches"]) <= SWITCH_PAGE
        seen += list(page["switches"])
        after = page.get("next")
        if after is None:
            break
    assert len(seen) == 1204 and seen == sorted(set(seen))
    small = service.list_switches(seen[9], "5")
    assert list(small["switches"]) == seen[10:15] and small["next"] == seen[14]


@pytest.mark.parametrize("after, limit, field", [("xyz", None, "after"), ("00000000000000e1", "0", "limit"),
                                                 (None, str(SWITCH_PAGE + 1), "limit"), (None, "ten", "limit")])
def test_a_bad_page_request_names_its_field(after, limit, field):
    with pytest.raises(FieldError) as raised:
        _service(2).list_switches(after, limit)
    assert raised.value.where == field
