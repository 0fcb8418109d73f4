"""GET /metrics: Prometheus text that parses, says what the REST views say of the same core,
asks for the operator's token, and keeps per-homenet series out when told to."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest
import webob
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from msp_controller.api import metrics_core
from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.metrics import PER_HOMENET_ENV, ControllerMetrics, per_homenet_from
from msp_controller.api.openapi import API_PREFIX, METRICS_PATH
from msp_controller.api.rest import RestApi, mount
from msp_controller.api.service import CoreService
from msp_controller.model.access import ApiToken, Role
from msp_controller.model.config import MspConfig, parse_homenet
from tests.harness import EDGE, EDGE2, HOME, Harness

SESSIONS = {"198.19.0.11": "established", "198.19.0.12": "active"}
EDGE_PORTS = {"vxlan-slot0": 11, "vxlan-slot1": 12}  # the edges' tunnel ports (tests/harness.py)
RTT_S = 0.004


def _service(harness: Harness, metrics: ControllerMetrics | None = None) -> CoreService:
    return CoreService(harness.core, lambda effects: [], clock=lambda: harness.now,
                       bgp_sessions=lambda: dict(SESSIONS), metrics=metrics or ControllerMetrics())


def _get(api: RestApi, path: str, **headers: str) -> webob.Response:
    request = webob.Request.blank(path)
    request.headers.update(headers)
    return api.handle(request)


def _scrape(api: RestApi, **headers: str) -> dict[str, list[Sample]]:
    response = _get(api, METRICS_PATH, **headers)
    assert response.status_int == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = text_string_to_metric_families(response.body.decode("utf-8"))
    return {family.name: family.samples for family in families}


def _by(samples: Iterable[Sample], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[name] for name in labels): s.value for s in samples}


def _probe_rounds(harness: Harness, rounds: int, lossy_port: int | None = None) -> None:
    """Probes sent by the controller, reflected by the MSPMB, back RTT_S later (or never,
    on lossy_port)."""
    for _ in range(rounds):
        harness.now += 0.05
        messages = harness.core.probe_tick(harness.now)
        for dpid, batch in messages.items():
            for message in batch:
                if dpid not in (EDGE, EDGE2) or not hasattr(message, "data"):
                    continue
                port = message.actions[-1].port
                if port != lossy_port:
                    harness.apply(harness.core.packet_in(dpid, port, 0, bytes(message.data), harness.now + RTT_S,
                                                         tunnel_id=1))


@pytest.fixture
def measured(net: Harness) -> Harness:
    """Every box connected; edge1's ISP B path dead at the MSPMB, ISP A probed, edge2's ISP B
    losing every probe."""
    net.set_live(HOME, "edge1-ispB", False)
    _probe_rounds(net, 60, lossy_port=EDGE_PORTS["vxlan-slot1"])
    return net


def test_metrics_say_what_the_rest_views_say(measured: Harness) -> None:
    service = _service(measured)
    api = RestApi(service)
    view, health = service.get_homenet("home1"), service.health()
    scraped = _scrape(api)

    states = _by(scraped["msp_path_state"], "homenet", "path", "state")
    up = _by(scraped["msp_path_up"], "homenet", "path")
    rtt = _by(scraped["msp_path_rtt_seconds"], "homenet", "path")
    jitter = _by(scraped["msp_path_jitter_seconds"], "homenet", "path")
    loss = _by(scraped["msp_path_loss_ratio"], "homenet", "path")
    assert len(states) == len(up) == len(view["paths"]) == 4
    for path in view["paths"]:
        key = ("home1", path["path"])
        assert states[(*key, path["state"])] == 1
        assert up[key] == (1.0 if path["live"] else 0.0)
        for family, field, scale in ((rtt, "rtt_ms", 1000), (jitter, "jitter_ms", 1000), (loss, "loss_pct", 100)):
            if path[field] is None:
                assert key not in family
            else:
                assert family[key] * scale == pytest.approx(path[field], abs=0.006)
    assert {p["state"] for p in view["paths"]} == {"up", "down"}  # the scenario is not trivial
    assert any(p["rtt_ms"] for p in view["paths"]) and any(p["loss_pct"] == 100 for p in view["paths"])

    active = _by(scraped["msp_class_active_path"], "class", "direction", "path")
    expected = {(c["name"], direction, path) for c in view["classes"] for direction in ("egress", "ingress")
                for path in (c[direction] or "none").split(" + ")}
    assert set(active) == expected and set(active.values()) == {1.0}

    assert _by(scraped["msp_paths"], "state") == {(s,): float(n) for s, n in health["paths"].items()}
    assert scraped["msp_homenets"][0].value == health["homenets"] == 1
    switches = _by(scraped["msp_switches"], "role", "state")
    for status in health["switches"].values():
        assert switches[(status["role"], "reconciled")] >= 1
    assert sum(switches[(role, "reconciled")] for role in ("mspmb", "edge", "underlay")) == len(health["switches"])


def test_bgp_and_the_cores_totals(measured: Harness) -> None:
    core = measured.core
    scraped = _scrape(RestApi(_service(measured)))
    assert _by(scraped["msp_bgp_session_up"], "neighbor") == {("198.19.0.11",): 1.0, ("198.19.0.12",): 0.0}
    assert set(_by(scraped["msp_bgp_session_state"], "neighbor", "state")) == set(SESSIONS.items())
    announced = _by(scraped["msp_bgp_announced_prefixes"], "neighbor")
    assert announced == {(n,): float(len(routes)) for n, routes in core.bgp_desired().items()}
    assert sum(announced.values()) > 0
    changes = _by([s for s in scraped["msp_path_changes"] if s.name.endswith("_total")], "direction")
    assert sum(changes.values()) == len(core.path_changes) > 0  # the deque is far from full here
    reconciled = _by([s for s in scraped["msp_reconciliations"] if s.name.endswith("_total")], "role")
    assert reconciled == {("mspmb",): 1.0, ("edge",): 2.0, ("underlay",): 4.0}
    assert scraped["msp_packet_ins_ignored"][0].value == core.ignored_packets


def test_rest_requests_and_packet_ins_are_counted(net: Harness) -> None:
    metrics = ControllerMetrics()
    api = RestApi(_service(net, metrics))
    for _ in range(3):
        assert _get(api, f"{API_PREFIX}/health").status_int == 200
    assert _get(api, f"{API_PREFIX}/homenets/nohome").status_int == 404
    assert api.handle(webob.Request.blank(f"{API_PREFIX}/health", method="BREW")).status_int == 405
    for reason in (0, 0, 1, 9):
        metrics.packet_in(reason)
    scraped = _scrape(api)
    requests = _by([s for s in scraped["msp_rest_requests"] if s.name.endswith("_total")], "method", "status")
    assert requests == {("GET", "200"): 3.0, ("GET", "404"): 1.0, ("other", "405"): 1.0}
    latency = scraped["msp_rest_request_duration_seconds"]
    counts = _by([s for s in latency if s.name.endswith("_count")], "method")
    assert counts == {("GET",): 4.0, ("other",): 1.0}
    buckets = [s for s in latency if s.name.endswith("_bucket") and s.labels["method"] == "GET"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 4.0
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    packet_ins = _by([s for s in scraped["msp_packet_ins"] if s.name.endswith("_total")], "reason")
    assert packet_ins == {("no_match",): 2.0, ("action",): 1.0, ("invalid_ttl",): 0.0, ("other",): 1.0}


def test_metrics_need_the_operators_token(net: Harness) -> None:
    tokens = [ApiToken("prometheus", Role.OPERATOR, digest("scrape-secret")),
              ApiToken("alice", Role.OWNER, digest("owner-secret"), homenet="home1")]
    api = RestApi(_service(net), Authorizer(tokens))
    assert _get(api, METRICS_PATH).status_int == 401
    assert _get(api, METRICS_PATH, Authorization="Bearer guess").status_int == 401
    assert _get(api, METRICS_PATH, Authorization="Bearer owner-secret").status_int == 403
    assert "msp_path_state" in _scrape(api, Authorization="Bearer scrape-secret")


def test_per_homenet_series_can_be_left_out(net: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    scraped = _scrape(RestApi(_service(net, ControllerMetrics(per_homenet=False))))
    assert not [name for name in scraped if name.startswith(("msp_path_", "msp_class_"))
                and name != "msp_path_changes"]
    assert _by(scraped["msp_paths"], "state")[("up",)] == 4.0
    assert scraped["msp_metrics_per_homenet"][0].value == 0.0
    labels = {label for samples in scraped.values() for s in samples for label in s.labels}
    assert "homenet" not in labels
    monkeypatch.setattr(metrics_core, "AUTO_PER_HOMENET_LIMIT", 0)  # auto, and "many" homenets
    assert "msp_path_state" not in _scrape(RestApi(_service(net, ControllerMetrics(per_homenet=None))))
    monkeypatch.setattr(metrics_core, "AUTO_PER_HOMENET_LIMIT", 1)
    assert "msp_path_state" in _scrape(RestApi(_service(net, ControllerMetrics(per_homenet=None))))


@pytest.mark.parametrize("value,expected", [("auto", None), ("", None), ("1", True), ("on", True),
                                            ("0", False), ("false", False)])
def test_the_per_homenet_switch(value: str, expected: bool | None) -> None:
    assert per_homenet_from({PER_HOMENET_ENV: value}) is expected
    assert per_homenet_from({}) is None


def test_a_bad_per_homenet_switch_names_the_variable() -> None:
    with pytest.raises(ValueError, match=PER_HOMENET_ENV + ".*'sometimes'"):
        per_homenet_from({PER_HOMENET_ENV: "sometimes"})


def test_a_long_scrape_pauses_for_the_controller(net: Harness, config: MspConfig,
                                                 reference_data: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    body = copy.deepcopy(reference_data["homenets"][0])
    body.update(name="home2", id=2, datapath_id=0x201, prefixes=["203.0.113.128/25"], lan_ipv4="203.0.113.129/25")
    del body["lan_ipv6"]
    for index, uplink in enumerate(body["uplinks"]):
        uplink["underlay_datapath_id"] = 0x211 + index
    net.core.add_homenet(parse_homenet(body, config), net.now)
    pauses: list[None] = []
    monkeypatch.setattr(metrics_core, "PAUSE_EVERY", 1)
    metrics = ControllerMetrics(pause=lambda: pauses.append(None))
    scraped = _scrape(RestApi(_service(net, metrics)))
    assert len(pauses) == 1 and scraped["msp_homenets"][0].value == 2
    assert _by(scraped["msp_paths"], "state") == {("up",): 4.0, ("down",): 0.0, ("unknown",): 4.0}


def test_watching_two_cores_is_refused(net: Harness) -> None:
    metrics = ControllerMetrics()
    metrics.watch(net.core)
    with pytest.raises(ValueError, match="already"):
        metrics.watch(net.core)


def test_mounted_on_ryu_the_path_is_metrics(net: Harness) -> None:
    from ryu.app.wsgi import WSGIApplication

    wsgi = WSGIApplication()
    mount(wsgi, _service(net))
    response = webob.Request.blank(METRICS_PATH).get_response(wsgi)
    assert response.status_int == 200 and b"msp_path_state{" in response.body
    assert webob.Request.blank(f"{API_PREFIX}/health").get_response(wsgi).status_int == 200
