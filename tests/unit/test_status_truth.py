"""What the REST API says of paths must be what is known: a path whose boxes are not
connected is "unknown" and not live, never "up"; it is up only once both tunnel ends
report it live, down as soon as one end says so."""
from __future__ import annotations

from typing import Any

import pytest
import webob

from msp_controller.api.openapi import API_PREFIX
from msp_controller.api.rest import RestApi
from msp_controller.api.service import CoreService
from msp_controller.model.config import MspConfig
from tests.harness import EDGE, EDGE2, EDGE2_UNDERLAY, EDGE_UNDERLAY, HOME, Harness

PATHS = ["ispA@edge1", "ispB@edge1", "ispA@edge2", "ispB@edge2"]
EDGE_BOXES = (EDGE, EDGE_UNDERLAY, EDGE2, EDGE2_UNDERLAY)


def _api(harness: Harness) -> RestApi:
    service = CoreService(harness.core, lambda effects: [], clock=lambda: harness.now)
    return RestApi(service)


def _get(api: RestApi, path: str) -> Any:
    response = api.handle(webob.Request.blank(API_PREFIX + path))
    assert response.status_int == 200, response.body
    return response.json


def _paths(api: RestApi) -> dict[str, dict[str, Any]]:
    return {p["path"]: p for p in _get(api, "/homenets/home1")["paths"]}


def _default_class(api: RestApi) -> dict[str, Any]:
    classes: list[dict[str, Any]] = _get(api, "/homenets/home1")["classes"]
    return next(c for c in classes if c["name"] == "default")


def _consistent_with_the_plan(harness: Harness, api: RestApi) -> None:
    """`live` is exactly the planner's "known live" (what BGP may promise)."""
    known = {str(p) for p in harness.core.plan("home1").known_live}
    assert {name for name, p in _paths(api).items() if p["live"]} == known


@pytest.fixture
def harness(config: MspConfig) -> Harness:
    return Harness(config)  # nothing connected yet


def test_with_no_switch_connected_every_path_is_unknown(harness: Harness) -> None:
    api = _api(harness)
    paths = _paths(api)
    assert list(paths) == PATHS
    for path in paths.values():
        assert path["state"] == "unknown" and path["live"] is False
        assert path["ends"] == {"mspmb": "unknown", "edge": "unknown"}
    summary = _get(api, "/homenets")[0]
    assert summary["live_paths"] == [] and set(summary["path_states"].values()) == {"unknown"}
    health = _get(api, "/health")
    assert health["status"] == "degraded" and health["paths"] == {"up": 0, "down": 0, "unknown": 4}
    _consistent_with_the_plan(harness, api)


def test_edges_connected_but_not_the_home_box_is_not_live(harness: Harness) -> None:
    """The controller still plans over these paths (traffic that flows must not move), but
    it must not tell the operator they work: the MSPMB has said nothing."""
    for dpid in EDGE_BOXES:
        harness.connect(dpid)
    api = _api(harness)
    for path in _paths(api).values():
        assert path["state"] == "unknown" and path["live"] is False
        assert path["ends"] == {"mspmb": "unknown", "edge": "up"}
    default = _default_class(api)
    assert default["egress"] == "ispA@edge1" and default["egress_state"] == "unknown"
    assert default["ingress"] == "ispA@edge1" and default["ingress_state"] == "unknown"
    summary = _get(api, "/homenets")[0]
    assert summary["live_paths"] == [] and summary["active_egress_state"] == "unknown"
    _consistent_with_the_plan(harness, api)


def test_every_box_connected_every_path_is_up(harness: Harness) -> None:
    harness.connect_all()
    api = _api(harness)
    for path in _paths(api).values():
        assert path["state"] == "up" and path["live"] is True
        assert path["ends"] == {"mspmb": "up", "edge": "up"}
    default = _default_class(api)
    assert (default["egress"], default["egress_state"]) == ("ispA@edge1", "up")
    assert (default["ingress"], default["ingress_state"]) == ("ispA@edge1", "up")
    summary = _get(api, "/homenets")[0]
    assert summary["live_paths"] == sorted(PATHS) and summary["active_ingress_state"] == "up"
    assert _get(api, "/health")["paths"] == {"up": 4, "down": 0, "unknown": 0}
    assert _get(api, "/health")["status"] == "ok"
    _consistent_with_the_plan(harness, api)


def test_one_end_reporting_dead_makes_the_path_down(harness: Harness) -> None:
    harness.connect_all()
    harness.set_live(HOME, "edge1-ispA", False)  # BFD down, as the MSPMB sees it
    api = _api(harness)
    path = _paths(api)["ispA@edge1"]
    assert path["state"] == "down" and path["live"] is False
    assert path["ends"] == {"mspmb": "down", "edge": "up"}
    default = _default_class(api)
    assert (default["egress"], default["egress_state"]) == ("ispB@edge1", "up")
    assert _get(api, "/health")["paths"] == {"up": 3, "down": 1, "unknown": 0}
    _consistent_with_the_plan(harness, api)


def test_a_box_that_leaves_makes_its_paths_unknown_again(harness: Harness) -> None:
    harness.connect_all()
    harness.apply(harness.core.switch_down(EDGE2, harness.now))
    api = _api(harness)
    paths = _paths(api)
    for name in ("ispA@edge2", "ispB@edge2"):
        assert paths[name]["state"] == "unknown" and paths[name]["live"] is False
        assert paths[name]["ends"] == {"mspmb": "up", "edge": "unknown"}
    assert paths["ispA@edge1"]["state"] == "up"
    _consistent_with_the_plan(harness, api)


def test_the_views_match_their_documented_schemas(harness: Harness) -> None:
    oas = pytest.importorskip("openapi_schema_validator")
    from msp_controller.api.openapi import openapi_document

    document = openapi_document()
    harness.connect(EDGE)  # a mix: edge1's ends up, the rest unknown
    api = _api(harness)
    for schema, path in (("Homenet", "/homenets/home1"), ("Health", "/health")):
        validator = oas.OAS30Validator({"$ref": f"#/components/schemas/{schema}", "components": document["components"]})
        validator.validate(_get(api, path))
    summary = oas.OAS30Validator({"$ref": "#/components/schemas/HomenetSummary", "components": document["components"]})
    for item in _get(api, "/homenets"):
        summary.validate(item)
    bad = {**_get(api, "/homenets/home1")}
    bad["paths"] = [{**bad["paths"][0], "state": "probably"}]
    from jsonschema.exceptions import ValidationError  # openapi_schema_validator's own dependency

    with pytest.raises(ValidationError, match="probably"):
        oas.OAS30Validator({"$ref": "#/components/schemas/Homenet", "components": document["components"]}).validate(bad)
