"""QoS over REST, on the real core: the policy's qos and rates go in and come back; a bad
field is a 400 naming it, and the policy in force stays as it was."""
from __future__ import annotations

import copy
import json
from typing import Any

import webob

from msp_controller.api.rest import RestApi
from msp_controller.api.service import CoreService
from tests.harness import Harness
from tests.unit.test_qos_policy import POLICY

PATH = "/api/v1/homenets/home1/policy"


def _call(api: RestApi, method: str, body: Any = None) -> tuple[int, Any]:
    req = webob.Request.blank(PATH, method=method)
    if body is not None:
        req.body = json.dumps(body).encode()
        req.headers["Content-Type"] = "application/json"
    response = req.get_response(api)
    return response.status_code, json.loads(response.body)


def test_qos_and_rates_through_rest(config):
    harness = Harness(config)
    harness.connect_all()
    api = RestApi(CoreService(harness.core, harness.apply, clock=lambda: harness.now))
    status, answer = _call(api, "PUT", POLICY)
    assert status in (200, 202), answer  # 202: the fake switches confirm nothing
    status, stored = _call(api, "GET")
    assert stored["classes"][0]["qos"] == {"dscp": 46, "priority": "realtime", "max_rate_kbps": 2000}
    assert stored["rates"]["ispA"] == {"down_kbps": 100000, "up_kbps": 20000}
    for change, where in ((("classes", 0, "qos", "priority"), 101), "classes[0].qos.priority"), \
                         ((("rates", "ispA", "up_kbps"), "20M"), "rates.ispA.up_kbps"):
        bad = copy.deepcopy(POLICY)
        (*path, key), value = change
        target = bad
        for step in path:
            target = target[step]
        target[key] = value
        status, answer = _call(api, "PUT", bad)
        assert status == 400 and answer["error"]["where"] == where, answer
        assert _call(api, "GET") == (200, stored)  # nothing changed
