"""An edge's shaper asks the controller for its downstream tc commands: everything once, then
only the homenets whose policy changed since the version it has applied (on the real core)."""
from __future__ import annotations

import copy
import json
from typing import Any

import webob

from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.rest import RestApi
from msp_controller.api.service import CoreService
from msp_controller.model.access import ApiToken, Role
from tests.harness import Harness
from tests.unit.test_qos_policy import POLICY

SHAPING = "/api/v1/edges/edge1/shaping"
OPERATOR, OWNER = "operator-secret", "owner-secret"


def _api(config) -> RestApi:
    harness = Harness(config)
    harness.connect_all()
    service = CoreService(harness.core, harness.apply, clock=lambda: harness.now)
    return RestApi(service, Authorizer([ApiToken("ops", Role.OPERATOR, digest(OPERATOR)),
                                        ApiToken("alice", Role.OWNER, digest(OWNER), homenet="home1")]))


def _call(api: RestApi, method: str, path: str, body: Any = None, token: str = OPERATOR) -> tuple[int, Any]:
    req = webob.Request.blank(path, method=method, headers={"Authorization": f"Bearer {token}"})
    if body is not None:
        req.body = json.dumps(body).encode()
        req.headers["Content-Type"] = "application/json"
    response = req.get_response(api)
    return response.status_code, json.loads(response.body)


def _rates(commands: list[list[str]]) -> set[str]:
    """The rates of the ISPs' classes, each at the top of its homenet's qdisc (<major>:)."""
    return {c[c.index("rate") + 1] for c in commands if c[:2] == ["class", "replace"]
            and c[c.index("parent") + 1].endswith(":") and c[c.index("parent") + 1] != "1:"}


def test_an_edges_shaper_gets_everything_once_then_only_what_changed(config):
    api = _api(config)
    status, first = _call(api, "GET", SHAPING)
    assert status == 200 and first["full"] is True
    assert first["base"][0][:5] == ["qdisc", "replace", "dev", "edge1-up", "root"]
    served = {h.name for h in config.homenets if "edge1" in h.edges}
    assert set(first["homenets"]) == served
    version = first["version"]

    status, answer = _call(api, "PUT", "/api/v1/homenets/home1/policy", POLICY)  # rates 100 / 50 Mbit/s down
    assert status in (200, 202), answer
    status, change = _call(api, "GET", f"{SHAPING}?since={version}")
    assert status == 200 and change["full"] is False and set(change["homenets"]) == {"home1"}
    home1 = change["homenets"]["home1"]
    assert _rates(home1["apply"]) == {"97000kbit", "48500kbit"}
    assert [c[:2] for c in home1["remove"]] == [["filter", "del"]] * 2 + [["class", "del"]]
    assert all(c[c.index("dev") + 1] == "edge1-up" for c in home1["remove"] + home1["apply"])

    status, nothing = _call(api, "GET", f"{SHAPING}?since={change['version']}")
    assert (status, nothing["homenets"], nothing["version"]) == (200, {}, change["version"])
    # A version the controller never gave (its store was replaced): everything again.
    status, again = _call(api, "GET", f"{SHAPING}?since={change['version'] + 100}")
    assert again["full"] is True and _rates(again["homenets"]["home1"]["apply"]) == {"97000kbit", "48500kbit"}

    # A refused policy changes nothing here either.
    bad = copy.deepcopy(POLICY)
    bad["rates"]["ispA"]["down_kbps"] = -1
    assert _call(api, "PUT", "/api/v1/homenets/home1/policy", bad)[0] == 400
    assert _call(api, "GET", f"{SHAPING}?since={change['version']}")[1]["homenets"] == {}


def test_bad_requests_are_named_and_owners_may_not_read_an_edge(config):
    api = _api(config)
    status, answer = _call(api, "GET", f"{SHAPING}?since=-1")
    assert status == 400 and answer["error"]["where"] == "since", answer
    status, answer = _call(api, "GET", f"{SHAPING}?since=1e9")
    assert status == 400 and answer["error"]["where"] == "since", answer
    status, answer = _call(api, "GET", f"{SHAPING}?after=no%20such")
    assert status == 400 and answer["error"]["where"] == "after", answer
    status, answer = _call(api, "GET", f"{SHAPING}?after=home1")  # the page after the last homenet
    assert status == 200 and answer["homenets"] == {} and "next" not in answer and "base" not in answer
    status, answer = _call(api, "GET", "/api/v1/edges/edge9/shaping")
    assert status == 404 and "edge9" in answer["error"]["message"]
    status, answer = _call(api, "GET", "/api/v1/edges/ed%20ge/shaping")
    assert status == 404
    assert _call(api, "GET", SHAPING, token=OWNER)[0] == 403
