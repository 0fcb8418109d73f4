"""An operator sees whether every edge's shaper follows the policies: GET /health and /metrics
say when each last asked and how far behind it was, and a shaper gone silent degrades the
health, naming its edge."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from msp_controller.api.ctl_tables import health_text
from msp_controller.api.edge_shapers_seen import SILENT_AFTER_S
from msp_controller.api.metrics import ControllerMetrics
from msp_controller.api.service import CoreService
from tests.harness import Harness
from tests.unit.test_qos_policy import POLICY


def _service(config) -> tuple[Harness, CoreService]:
    harness = Harness(config)
    harness.connect_all()
    return harness, CoreService(harness.core, harness.apply, clock=lambda: harness.now, metrics=ControllerMetrics())


def _scraped(service: CoreService) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(service.metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith("msp_edge_shaper_"):
                found.setdefault(sample.name, {})[sample.labels["edge"]] = sample.value
    return found


def test_a_shaper_that_asks_is_shown_with_the_version_it_applied(config):
    harness, service = _service(config)
    health = service.health()
    assert set(health["edge_shapers"]) == {edge.name for edge in config.edges}
    assert all(seen["seen_s_ago"] is None and not seen["silent"] for seen in health["edge_shapers"].values())
    assert health["status"] == "ok"  # an MSP without edge shapers is not degraded by them
    first = service.edge_shaping("edge1", None)
    harness.now += 0.5
    service.put_policy("home1", POLICY)  # one version the shaper has not applied yet
    harness.now += 0.25
    shapers = service.health()["edge_shapers"]
    assert shapers["edge1"] == {"seen_s_ago": 0.75, "applied_version": None, "versions_behind": None, "silent": False}
    service.edge_shaping("edge1", str(first["version"]))
    shapers = service.health()["edge_shapers"]
    assert shapers["edge1"]["applied_version"] == first["version"] and shapers["edge1"]["versions_behind"] == 1
    assert _scraped(service) == {"msp_edge_shaper_seconds_since_request": {"edge1": 0.0},
                                 "msp_edge_shaper_versions_behind": {"edge1": 1.0}}


def test_a_shaper_gone_silent_degrades_the_health_naming_its_edge(config):
    harness, service = _service(config)
    answer = service.edge_shaping("edge2", None)
    service.edge_shaping("edge2", str(answer["version"]))
    harness.now += SILENT_AFTER_S - 1
    assert service.health()["status"] == "ok"
    harness.now += 2
    health = service.health()
    assert health["status"] == "degraded" and health["edge_shapers"]["edge2"]["silent"]
    assert _scraped(service)["msp_edge_shaper_seconds_since_request"] == {"edge2": SILENT_AFTER_S + 1}
    shown = health_text(health)  # mspctl health
    assert "EDGE SHAPER" in shown and any(line.split()[:1] == ["edge2"] and line.split()[-1] == "yes"
                                          for line in shown.splitlines())
    service.edge_shaping("edge2", str(answer["version"]))  # it came back
    assert service.health()["status"] == "ok"

