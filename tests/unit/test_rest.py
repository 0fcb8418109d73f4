"""The REST layer over an in-memory service: routes, every error code, never a 500 for client input."""
from __future__ import annotations

import copy
import http.client
import io
import json
import logging
import pathlib
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import webob

from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.openapi import API_PREFIX, MAX_BODY_BYTES, openapi_document
from msp_controller.api.rest import NotFound, RestApi, mount
from msp_controller.model.access import ApiToken, Role
from msp_controller.model.errors import FieldError

ISPS = ("ispA", "ispB")
POLICY_KEYS = {"classes", "default"}
CLASS_KEYS = {"name", "match", "egress", "ingress"}


class ShapedError(ValueError):
    """A ValueError that is not a FieldError but has where/problem: answered as one."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _check_selection(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ShapedError(where, "must be an object")
    order = value.get("order", list(ISPS))
    if not isinstance(order, list) or not order:
        raise ShapedError(f"{where}.order", "must be a non-empty list of uplinks")
    for i, isp in enumerate(order):
        if isp not in ISPS:
            raise ShapedError(f"{where}.order[{i}]", f"unknown ISP {isp!r}")


def _check_class(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ShapedError(where, "must be an object")
    unknown = set(value) - CLASS_KEYS
    if unknown:
        raise ShapedError(where, f"unknown keys {sorted(unknown)}")
    if not isinstance(value.get("name"), str):
        raise ShapedError(f"{where}.name", "must be a string")
    match = value.get("match", {})
    if not isinstance(match, dict):
        raise ShapedError(f"{where}.match", "must be an object")
    dscp = match.get("dscp", 0)
    if type(dscp) is not int or not 0 <= dscp <= 63:
        raise ValueError("dscp must be 0..63")  # a plain ValueError: 400 with its text
    for key in ("egress", "ingress"):
        if key in value:
            _check_selection(value[key], f"{where}.{key}")


def validate_policy(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ShapedError("", "must be an object")
    unknown = set(body) - POLICY_KEYS
    if unknown:
        raise ShapedError(min(unknown), "unknown key")
    classes = body.get("classes", [])
    if not isinstance(classes, list):
        raise ShapedError("classes", "must be a list")
    for i, item in enumerate(classes):
        _check_class(item, f"classes[{i}]")
    if "default" in body:
        _check_selection(body["default"].get("egress", {}) if isinstance(body["default"], dict)
                         else None, "default.egress")
    return copy.deepcopy(body)


FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}


class FakeService:
    """In memory, all-or-nothing like the real one: a rejected policy changes nothing."""

    def __init__(self) -> None:
        self.policies: dict[str, dict[str, Any]] = {
            "home1": {"classes": [{"name": "voice",
                                   "match": {"protocol": "udp", "dst_ports": [5060, "16384-32767"], "dscp": 46},
                                   "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 80,
                                              "hysteresis_pct": 20, "recover_s": 10},
                                   "ingress": FAILOVER_AB}],
                      "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}},
            "home.2_x-y": {"classes": [], "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}},
        }
        self.connected = True
        self.put_calls = 0
        self.fail: BaseException | None = None  # raised by every call, to play a buggy core

    def _check(self, name: str) -> None:
        if self.fail is not None:
            raise self.fail
        if name not in self.policies:
            raise NotFound(f"no homenet named {name!r}")

    def health(self) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        return {"status": "ok", "switches": {"00000000000000e1": {"connected": True}}, "uptime_s": 12.5}

    def list_homenets(self) -> list[dict[str, Any]]:
        if self.fail is not None:
            raise self.fail
        return [{"name": name, "active_egress": "ispA@edge1"} for name in self.policies]

    def get_homenet(self, name: str) -> dict[str, Any]:
        self._check(name)
        path = {"path": "ispA@edge1", "isp": "ispA", "edge": "edge1", "live": True, "rtt_ms": 12.0,
                "jitter_ms": 0.5, "loss_pct": 0.0, "tx_packets": 10, "tx_bytes": 1000,
                "rx_packets": 9, "rx_bytes": 900}
        return {"name": name, "prefixes": ["198.51.100.0/24"], "uplinks": ["ispA", "ispB"],
                "paths": [path, {**path, "path": "ispB@edge1", "isp": "ispB", "live": False,
                                 "rtt_ms": None, "jitter_ms": None, "loss_pct": None}],
                "classes": [{"name": "voip", "egress": "ispA@edge1", "ingress": None}]}

    def get_policy(self, name: str) -> dict[str, Any]:
        self._check(name)
        return copy.deepcopy(self.policies[name])

    def put_policy(self, name: str, body: Any) -> dict[str, Any]:
        self.put_calls += 1
        self._check(name)
        policy = validate_policy(body)
        self.policies[name] = policy
        if not self.connected:
            return {"applied": False, "pending": ["00000000000000e1"]}
        return {"policy": policy, "applied": True, "applied_ms": 3.25}

    def create_homenet(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str):
            raise FieldError("homenet.name", "is required")
        if name in self.policies:
            raise FieldError("homenet.name", f"a homenet named {name!r} exists")
        self.policies[name] = {"classes": [], "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}}
        if not self.connected:
            return {"applied": False, "pending": ["0000000000000201"]}
        return {"homenet": {"name": name}, "applied": True, "applied_ms": 1.0}

    def replace_homenet(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check(name)
        return {"homenet": {"name": name}, "applied": True, "applied_ms": 1.0}

    def delete_homenet(self, name: str) -> dict[str, Any]:
        self._check(name)
        del self.policies[name]
        return {"deleted": name, "applied": True, "applied_ms": 1.0}


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def api(service: FakeService) -> RestApi:
    return RestApi(service)


def request(api: RestApi, method: str, path: str, body: Any = None, raw: bytes | None = None,
            content_type: str | None = "application/json", **headers: str) -> webob.Response:
    req = webob.Request.blank(path, method=method)
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    if raw is not None:
        req.body = raw
    if content_type is not None and raw is not None:
        req.headers["Content-Type"] = content_type
    req.headers.update(headers)
    return api.handle(req)


def error_of(response: webob.Response, status: int) -> dict[str, Any]:
    assert response.status_int == status, response.body
    assert response.content_type == "application/json"
    error = json.loads(response.body)["error"]
    assert error["status"] == status and isinstance(error["message"], str) and error["message"]
    return dict(error)


POLICY = f"{API_PREFIX}/homenets/home1/policy"
GOOD = {"classes": [{"name": "web", "match": {"protocol": "tcp", "dst_ports": [443]},
                     "egress": {"mode": "balance", "weights": {"ispA": 1, "ispB": 3}},
                     "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}}],
        "default": {"egress": {"mode": "failover", "order": ["ispB", "ispA"]}, "ingress": FAILOVER_AB}}


# --- happy paths --------------------------------------------------------------------------------

def test_health(api: RestApi) -> None:
    response = request(api, "GET", f"{API_PREFIX}/health")
    assert response.status_int == 200 and response.content_type == "application/json"
    assert response.json["status"] == "ok"


def test_homenets(api: RestApi) -> None:
    response = request(api, "GET", f"{API_PREFIX}/homenets")
    assert response.status_int == 200
    assert [h["name"] for h in response.json] == ["home1", "home.2_x-y"]


def test_homenet(api: RestApi) -> None:
    response = request(api, "GET", f"{API_PREFIX}/homenets/home1")
    assert response.status_int == 200
    assert response.json["name"] == "home1" and response.json["paths"][1]["rtt_ms"] is None


def test_names_in_the_path_are_url_decoded(api: RestApi) -> None:
    assert request(api, "GET", f"{API_PREFIX}/homenets/home%31").json["name"] == "home1"
    assert request(api, "GET", f"{API_PREFIX}/homenets/home%2E2_x-y").json["name"] == "home.2_x-y"


def test_get_policy(api: RestApi, service: FakeService) -> None:
    response = request(api, "GET", POLICY)
    assert response.status_int == 200 and response.json == service.policies["home1"]


def test_put_policy_applied(api: RestApi, service: FakeService) -> None:
    response = request(api, "PUT", POLICY, GOOD)
    assert response.status_int == 200
    assert response.json == {"policy": GOOD, "applied": True, "applied_ms": 3.25}
    assert request(api, "GET", POLICY).json == GOOD == service.policies["home1"]


def test_put_policy_pending_is_202(api: RestApi, service: FakeService) -> None:
    service.connected = False
    response = request(api, "PUT", POLICY, GOOD)
    assert response.status_int == 202 and response.json == {"applied": False, "pending": ["00000000000000e1"]}


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8",
                                          "Application/JSON ; charset=\"UTF-8\""])
def test_put_accepts_json_and_missing_content_type(api: RestApi, content_type: str | None) -> None:
    assert request(api, "PUT", POLICY, GOOD, content_type=content_type).status_int == 200


def test_openapi_json(api: RestApi) -> None:
    response = request(api, "GET", f"{API_PREFIX}/openapi.json")
    assert response.status_int == 200 and response.json == openapi_document()


def test_wsgi_callable(api: RestApi) -> None:
    response = webob.Request.blank(f"{API_PREFIX}/homenets").get_response(api)
    assert response.status_int == 200 and response.json[0]["name"] == "home1"
    assert webob.Request.blank("/nowhere").get_response(api).status_int == 404


# --- 404 / 405 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", f"{API_PREFIX}/homenets/nohome"),
                                         ("GET", f"{API_PREFIX}/homenets/nohome/policy"),
                                         ("PUT", f"{API_PREFIX}/homenets/nohome/policy")])
def test_unknown_homenet_is_404(api: RestApi, method: str, path: str) -> None:
    error = error_of(request(api, method, path, GOOD if method == "PUT" else None), 404)
    assert error["message"] == "no homenet named 'nohome'"


@pytest.mark.parametrize("path", [
    "/", "/api", API_PREFIX, f"{API_PREFIX}/", f"{API_PREFIX}/nothing", f"{API_PREFIX}/homenets/",
    f"{API_PREFIX}/homenets/home1/", f"{API_PREFIX}/homenets/home1/policy/x", f"{API_PREFIX}/health/",
    f"{API_PREFIX}/homenets/a%2Fb",  # %2F decodes to "/": a different path, not a name
])
def test_unknown_path_is_404(api: RestApi, path: str) -> None:
    error_of(request(api, "GET", path), 404)


@pytest.mark.parametrize("name", ["home1%0A", "home1%0D%0A", "h%20x", "h%FF", "h%C3%A9", "%00", "h%0Ax", "..%5C..",
                                  "a;b", "a%3Fb",
                                  "h" + "%E2%80%8B" * 50])
@pytest.mark.parametrize("suffix", ["", "/policy"])
def test_names_outside_the_alphabet_are_404(api: RestApi, service: FakeService, name: str, suffix: str) -> None:
    for method in ("GET", "PUT"):
        error_of(request(api, method, f"{API_PREFIX}/homenets/{name}{suffix}", GOOD), 404)
    assert service.put_calls == 0


def test_homenets_are_created_replaced_and_deleted(api: RestApi, service: FakeService) -> None:
    created = request(api, "POST", f"{API_PREFIX}/homenets", {"name": "home3"})
    assert created.status_int == 201 and json.loads(created.body)["applied"] is True
    clash = error_of(request(api, "POST", f"{API_PREFIX}/homenets", {"name": "home3"}), 400)
    assert clash["where"] == "homenet.name" and "exists" in clash["message"]
    assert request(api, "PUT", f"{API_PREFIX}/homenets/home3", {"name": "home3"}).status_int == 200
    service.connected = False
    assert request(api, "POST", f"{API_PREFIX}/homenets", {"name": "home4"}).status_int == 202
    assert json.loads(request(api, "DELETE", f"{API_PREFIX}/homenets/home3").body)["deleted"] == "home3"
    error_of(request(api, "DELETE", f"{API_PREFIX}/homenets/home3"), 404)
    error_of(request(api, "POST", f"{API_PREFIX}/homenets", raw=b"[1]"), 400)


@pytest.mark.parametrize("method,path,allow", [
    ("POST", f"{API_PREFIX}/health", "GET"),
    ("DELETE", f"{API_PREFIX}/homenets", "GET, POST"),
    ("PATCH", f"{API_PREFIX}/homenets/home1", "GET, PUT, DELETE"),
    ("POST", POLICY, "GET, PUT"),
    ("DELETE", POLICY, "GET, PUT"),
    ("PATCH", POLICY, "GET, PUT"),
    ("HEAD", f"{API_PREFIX}/openapi.json", "GET"),
])
def test_wrong_method_is_405_with_allow(api: RestApi, method: str, path: str, allow: str) -> None:
    response = request(api, method, path)
    assert response.status_int == 405 and response.headers["Allow"] == allow
    if method != "HEAD":
        error_of(response, 405)


# --- 400 / 413 / 415 ----------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx",
                                          "application/json; charset=latin-1", "application/merge-patch+json"])
def test_other_content_types_are_415(api: RestApi, service: FakeService, content_type: str) -> None:
    error_of(request(api, "PUT", POLICY, GOOD, content_type=content_type), 415)
    assert service.put_calls == 0


def test_eventlets_invented_content_type_is_ignored(api: RestApi) -> None:
    req = webob.Request.blank(POLICY, method="PUT", body=json.dumps(GOOD).encode())
    req.environ.update({"CONTENT_TYPE": "text/plain", "headers_raw": (("Content-Length", "2"),)})
    assert api.handle(req).status_int == 200
    req.environ["headers_raw"] = (("content-type", "text/plain"),)
    error_of(api.handle(req), 415)


def test_body_over_64k_is_413(api: RestApi, service: FakeService) -> None:
    big = {"classes": [{"name": "x" * (MAX_BODY_BYTES)}]}
    error_of(request(api, "PUT", POLICY, big), 413)
    padded = json.dumps(GOOD).encode().ljust(MAX_BODY_BYTES + 1)  # valid JSON, just too long
    error_of(request(api, "PUT", POLICY, raw=padded), 413)
    assert request(api, "PUT", POLICY, raw=json.dumps(GOOD).encode().ljust(MAX_BODY_BYTES)).status_int == 200
    assert service.put_calls == 1


def test_declared_length_over_64k_is_413_before_reading(api: RestApi) -> None:
    req = webob.Request.blank(POLICY, method="PUT")
    req.environ["wsgi.input"] = io.BytesIO(b"{}")
    req.environ["CONTENT_LENGTH"] = str(10 * MAX_BODY_BYTES)
    error_of(api.handle(req), 413)


def test_body_without_length_is_still_bounded(api: RestApi) -> None:
    req = webob.Request.blank(POLICY, method="PUT")
    req.environ.pop("CONTENT_LENGTH", None)
    req.environ["wsgi.input"] = io.BytesIO(b"[" + b" " * (10 * MAX_BODY_BYTES) + b"]")
    req.environ["wsgi.input_terminated"] = True  # a chunked request, as eventlet passes it
    error_of(api.handle(req), 413)


class _DechunkingInput(io.BytesIO):
    chunked_input = True  # what eventlet's wsgi.Input says of a chunked request


def _chunked(stream: io.BytesIO, **environ: Any) -> webob.Request:
    req = webob.Request.blank(POLICY, method="PUT", content_type="application/json")
    req.environ.pop("CONTENT_LENGTH", None)
    req.environ.update({"wsgi.input": stream, "HTTP_TRANSFER_ENCODING": "chunked", **environ})
    return req


def test_chunked_body_when_the_server_dechunks(api: RestApi, service: FakeService) -> None:
    assert api.handle(_chunked(_DechunkingInput(json.dumps(GOOD).encode()))).status_int == 200
    assert api.handle(_chunked(io.BytesIO(b"{}"), **{"wsgi.input_terminated": True})).status_int == 200
    error_of(api.handle(_chunked(_DechunkingInput(b" " * (MAX_BODY_BYTES + 1)))), 413)
    assert service.put_calls == 2


def test_chunked_body_the_server_cannot_read_is_411(api: RestApi, service: FakeService) -> None:
    error_of(api.handle(_chunked(io.BytesIO(b"5\r\n{}\r\n0\r\n\r\n"))), 411)
    assert service.put_calls == 0


def test_truncated_body_is_400(api: RestApi) -> None:
    req = webob.Request.blank(POLICY, method="PUT")
    req.environ["wsgi.input"] = io.BytesIO(b'{"classes": [')
    req.environ["CONTENT_LENGTH"] = "1000"
    assert "ended" in error_of(api.handle(req), 400)["message"]


@pytest.mark.parametrize("length", ["-1", "abc", "0x10", "\u00b2", "1 2"])
def test_odd_content_length_is_400(api: RestApi, length: str) -> None:
    req = webob.Request.blank(POLICY, method="PUT")
    req.environ["wsgi.input"] = io.BytesIO(b"{}")
    req.environ["CONTENT_LENGTH"] = length
    assert "Content-Length" in error_of(api.handle(req), 400)["message"]


def test_not_json_says_where(api: RestApi, service: FakeService) -> None:
    error = error_of(request(api, "PUT", POLICY, raw=b'{"classes": [}'), 400)
    assert "not JSON" in error["message"] and "line 1 column 14 (char 13)" in error["message"]
    error = error_of(request(api, "PUT", POLICY, raw=b'{\n  "classes": [],\n}'), 400)
    assert "line 3 column 1" in error["message"]
    assert service.put_calls == 0


@pytest.mark.parametrize("raw,words", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b"[]", "not an array"),
    (b'"policy"', "not a string"),
    (b"42", "not a number"),
    (b"null", "not null"),
    (b"true", "not a boolean"),
    (b'{"classes": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e999}', "out of range"),
    (b'{"a": ' + b"9" * 5000 + b"}", "too large"),
    (b'{"classes": [], "classes": []}', "duplicate key 'classes'"),
    (b'\xef\xbb\xbf{}', "BOM"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"\\udfff": 1}', "surrogate"),
])
def test_bad_bodies_are_400(api: RestApi, service: FakeService, raw: bytes, words: str) -> None:
    error = error_of(request(api, "PUT", POLICY, raw=raw), 400)
    assert words in error["message"]
    assert service.put_calls == 0


def test_deep_nesting_is_400_with_where(api: RestApi) -> None:
    nested: Any = 1
    for _ in range(40):
        nested = {"c": [nested]}
    error = error_of(request(api, "PUT", POLICY, {"classes": nested}), 400)
    assert "levels deep" in error["message"] and error["where"].startswith("classes.c[0].c[0]")
    error = error_of(request(api, "PUT", POLICY, raw=b"[" * 30000 + b"]" * 30000), 400)
    assert "levels deep" in error["message"]


def test_service_bad_request_is_400_with_where(api: RestApi, service: FakeService) -> None:
    body = {"classes": [{"name": "web", "egress": {"order": ["ispA", "ispC"]}}]}
    error = error_of(request(api, "PUT", POLICY, body), 400)
    assert error == {"status": 400, "where": "classes[0].egress.order[1]", "message": "unknown ISP 'ispC'"}
    error = error_of(request(api, "PUT", POLICY, {"colour": "blue"}), 400)  # FieldError itself
    assert error == {"status": 400, "where": "colour", "message": "unknown key"}


def test_service_plain_value_error_on_put_is_400(api: RestApi) -> None:
    error = error_of(request(api, "PUT", POLICY, {"classes": [{"name": "x", "match": {"dscp": 64}}]}), 400)
    assert error == {"status": 400, "message": "dscp must be 0..63"}


BAD_BODIES: list[Any] = [
    {"classes": {"name": "x"}},
    {"classes": [None]},
    {"classes": [{"name": 5}]},
    {"classes": [{"name": "x", "egress": "ispA"}]},
    {"classes": [{"name": "x", "egress": {"order": []}}]},
    {"classes": [{"name": "x", "egress": {"order": ["ispA", "nope"]}}]},
    {"default": {"egress": {"order": "ispA"}}},
    {"classes": [], "extra": 1},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_rejected_put_leaves_the_policy_unchanged(api: RestApi, service: FakeService, body: Any) -> None:
    before = request(api, "GET", POLICY).json
    error_of(request(api, "PUT", POLICY, body), 400)
    assert request(api, "GET", POLICY).json == before


# --- never a 500 for client input ----------------------------------------------------------------

def _garbage_values() -> list[Any]:
    values: list[Any] = [None, True, False, 0, -1, 2**63, -(2**64), 1.5, 1e308, -1e-308, "", "x" * 1000,
                         "héllo ✓ 🛰", "\u0000", "\u202e", "\ufeff", [], {}, [[[]]], {"": {}},
                         {"name": {"$ref": "#"}}, ["ispA"] * 100]
    return values


def _garbage_bodies() -> list[bytes]:
    rng = random.Random(4)
    bodies = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(60)]
    bodies += [b"{" * n for n in (1, 33, 1000, 40000)] + [b'{"a":' * 5000 + b"1" + b"}" * 5000]
    bodies += [b"[" * 31 + b"]" * 31, b'{"classes": ' + b"[" * 2000 + b"]" * 2000 + b"}"]
    bodies += [b"1" * 60000, b"-" + b"9" * 4400, b"1e" + b"9" * 400, b"0." + b"0" * 30000 + b"1"]
    bodies += [b'{"classes": [{"name": "\\u' + h + b'"}]}' for h in (b"d800", b"0000", b"ZZZZ", b"")]
    bodies += ["{\"classes\": \"é\"}".encode("utf-16"), "{\"classes\": 1}".encode("utf-32"), b"\x00" * 100]
    for value in _garbage_values():
        bodies.append(json.dumps(value).encode())
        bodies.append(json.dumps({"classes": value}).encode())
        bodies.append(json.dumps({"classes": [value]}).encode())
        bodies.append(json.dumps({"classes": [{"name": "x", "egress": value}]}).encode())
        bodies.append(json.dumps({"classes": [{"name": "x", "match": value}]}).encode())
        bodies.append(json.dumps({"classes": [{"name": "x", "match": {"dscp": value}}]}).encode())
        bodies.append(json.dumps({"default": value}).encode())
        bodies.append(json.dumps({"default": {"egress": {"order": value}}}).encode())
    return bodies


def test_garbage_bodies_never_cause_a_500(api: RestApi, service: FakeService,
                                          caplog: pytest.LogCaptureFixture) -> None:
    statuses = set()
    with caplog.at_level(logging.ERROR, logger="msp.rest"):
        for raw in _garbage_bodies():
            for content_type in ("application/json", None):
                response = request(api, "PUT", POLICY, raw=raw, content_type=content_type)
                assert response.status_int < 500, (raw[:80], response.body)
                json.loads(response.body)  # always JSON
                statuses.add(response.status_int)
    assert not caplog.records
    assert statuses <= {200, 400, 413}
    assert 400 in statuses


# --- 500: bugs in the service -----------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", f"{API_PREFIX}/health"), ("GET", f"{API_PREFIX}/homenets"),
    ("GET", f"{API_PREFIX}/homenets/home1"), ("GET", POLICY), ("PUT", POLICY)])
def test_service_bug_is_a_logged_generic_500(api: RestApi, service: FakeService, method: str, path: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    service.fail = RuntimeError("secret internal detail")
    with caplog.at_level(logging.ERROR, logger="msp.rest"):
        response = request(api, method, path, GOOD if method == "PUT" else None)
    error = error_of(response, 500)
    assert "secret" not in response.text and "internal error" in error["message"]
    record, = caplog.records
    assert record.name == "msp.rest" and record.exc_info and record.exc_info[0] is RuntimeError


def test_plain_value_error_from_a_get_is_a_bug_not_a_400(api: RestApi, service: FakeService) -> None:
    service.fail = ValueError("int('x')")
    error_of(request(api, "GET", f"{API_PREFIX}/homenets/home1"), 500)
    service.fail = FieldError("x", "explicitly the client's fault")
    assert error_of(request(api, "GET", f"{API_PREFIX}/homenets/home1"), 400)["where"] == "x"


def test_a_plain_key_error_is_a_bug_not_a_404(api: RestApi, service: FakeService) -> None:
    service.fail = KeyError("home1")
    error_of(request(api, "GET", f"{API_PREFIX}/homenets/home1"), 500)


@pytest.mark.parametrize("result", [{"rtt": float("nan")}, {"x": object()}, {1j: 1}])
def test_unserializable_results_are_500(api: RestApi, service: FakeService, result: Any) -> None:
    service.health = lambda: result  # type: ignore[method-assign]
    error_of(request(api, "GET", f"{API_PREFIX}/health"), 500)


# --- Ryu's WSGIApplication ----------------------------------------------------------------------

def test_mount_on_ryu_wsgi_application(service: FakeService) -> None:
    from ryu.app.wsgi import WSGIApplication

    wsgi = WSGIApplication()
    api = mount(wsgi, service)
    assert isinstance(api, RestApi) and api.service is service
    assert any(route.routepath.startswith(API_PREFIX) for route in wsgi.mapper.matchlist)

    def through_ryu(method: str, path: str, body: bytes | None = None) -> webob.Response:
        req = webob.Request.blank(path, method=method)
        if body is not None:
            req.body = body
            req.content_type = "application/json"
        return req.get_response(wsgi)

    assert through_ryu("GET", f"{API_PREFIX}/health").json["status"] == "ok"
    assert through_ryu("GET", f"{API_PREFIX}/homenets/home%31").json["name"] == "home1"
    assert through_ryu("PUT", POLICY, json.dumps(GOOD).encode()).status_int == 200
    assert service.policies["home1"] == GOOD
    for path in (f"{API_PREFIX}/nothing", f"{API_PREFIX}/homenets/%FF", API_PREFIX):
        error_of(through_ryu("GET", path), 404)  # JSON, not Ryu's HTML 404
    error_of(through_ryu("PUT", POLICY, b"{"), 400)
    assert through_ryu("DELETE", POLICY).headers["Allow"] == "GET, PUT"


RYU_SERVER = """
from ryu.lib import hub
hub.patch(thread=False)  # as ryu-manager does
from ryu.app.wsgi import WSGIApplication
from msp_controller.api.rest import mount
from tests.unit.test_rest import FakeService
app = WSGIApplication()
mount(app, FakeService())
server = hub.WSGIServer(("127.0.0.1", 0), app)
print(server.server.getsockname()[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def ryu_server() -> Iterator[http.client.HTTPConnection]:
    """Ryu's own eventlet WSGI server, in a child process (eventlet patches the whole process)."""
    root = pathlib.Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", RYU_SERVER], cwd=root, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        assert port.isdigit(), "the Ryu WSGI server did not start"
        connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        yield connection
        connection.close()
    finally:
        child.terminate()
        child.wait(timeout=10)


def _exchange(connection: http.client.HTTPConnection, method: str, path: str,
              **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    connection.request(method, path, **kwargs)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_under_ryus_eventlet_server(ryu_server: http.client.HTTPConnection) -> None:
    status, headers, body = _exchange(ryu_server, "GET", f"{API_PREFIX}/health")
    assert status == 200 and headers["Content-Type"] == "application/json" and json.loads(body)["status"] == "ok"
    chunks = iter([b'{"classes": [{"name": "web", ', b'"egress": {"order": ["ispB"]}}]}'])
    status, _, body = _exchange(ryu_server, "PUT", POLICY, body=chunks, encode_chunked=True,
                                headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert status == 200 and json.loads(body)["policy"]["classes"][0]["name"] == "web"
    status, _, body = _exchange(ryu_server, "GET", POLICY)
    assert json.loads(body)["classes"][0]["egress"]["order"] == ["ispB"]
    big = iter([b" " * 40000, b" " * 40000])
    status, _, body = _exchange(ryu_server, "PUT", POLICY, body=big, encode_chunked=True,
                                headers={"Transfer-Encoding": "chunked"})
    assert status == 413 and json.loads(body)["error"]["status"] == 413
    status, _, body = _exchange(ryu_server, "PUT", POLICY, body=b'{"classes": [}')  # no Content-Type
    assert status == 400 and "line 1 column 14" in json.loads(body)["error"]["message"]
    status, _, body = _exchange(ryu_server, "PUT", POLICY, body=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, headers, _ = _exchange(ryu_server, "DELETE", POLICY)
    assert status == 405 and headers["Allow"] == "GET, PUT"
    status, _, body = _exchange(ryu_server, "GET", f"{API_PREFIX}/homenets/h%FFx")
    assert status == 404 and json.loads(body)["error"]["status"] == 404


# --- the OpenAPI document -----------------------------------------------------------------------

def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_document_and_server_serve_the_same_routes(api: RestApi) -> None:
    document = openapi_document()
    served = {route.template: sorted(m.lower() for m in route.methods) for route in api.routes}
    documented = {path: sorted(k for k in item if k in {"get", "put", "post", "delete", "patch", "head"})
                  for path, item in document["paths"].items()}
    assert served == documented


def test_every_ref_resolves() -> None:
    document = openapi_document()
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert isinstance(_resolve(document, ref), dict)


def test_every_operation_documents_its_errors() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            assert {"405", "500"} <= codes, (path, method)
            assert "{name}" not in path or "404" in codes
            assert method != "put" or {"400", "413", "415"} <= codes


def test_document_is_valid_openapi_3_0() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_document())


def _schema_validator(schema_ref: str) -> Any:
    oas = pytest.importorskip("openapi_schema_validator")
    document = openapi_document()
    schema = {**_resolve(document, schema_ref), "components": document["components"]}
    return oas.OAS30Validator(schema)


def test_responses_match_the_documented_schemas(api: RestApi) -> None:
    def check(path: str, method: str, response: webob.Response) -> None:
        operation = openapi_document()["paths"][path][method]
        documented = operation["responses"][str(response.status_int)]
        if "$ref" in documented:
            documented = _resolve(openapi_document(), documented["$ref"])
        schema = documented["content"]["application/json"]["schema"]
        oas = pytest.importorskip("openapi_schema_validator")
        document = openapi_document()
        oas.OAS30Validator({**schema, "components": document["components"]}).validate(response.json)

    named = f"{API_PREFIX}/homenets/{{name}}"
    check(f"{API_PREFIX}/health", "get", request(api, "GET", f"{API_PREFIX}/health"))
    check(f"{API_PREFIX}/homenets", "get", request(api, "GET", f"{API_PREFIX}/homenets"))
    check(named, "get", request(api, "GET", f"{API_PREFIX}/homenets/home1"))
    check(named, "get", request(api, "GET", f"{API_PREFIX}/homenets/nohome"))
    check(f"{named}/policy", "get", request(api, "GET", POLICY))
    check(f"{named}/policy", "put", request(api, "PUT", POLICY, GOOD))
    check(f"{named}/policy", "put", request(api, "PUT", POLICY, raw=b"{"))
    check(f"{named}/policy", "put", request(api, "PUT", POLICY, GOOD, content_type="text/plain"))
    check(f"{named}/policy", "put", request(api, "PUT", POLICY, raw=b" " * (MAX_BODY_BYTES + 1)))
    check(f"{named}/policy", "put", request(api, "DELETE", POLICY))
    check(f"{API_PREFIX}/openapi.json", "get", request(api, "GET", f"{API_PREFIX}/openapi.json"))


def test_policy_schema_accepts_good_policies_and_rejects_typos(service: FakeService) -> None:
    validator = _schema_validator("#/components/schemas/Policy")
    for policy in [GOOD, *service.policies.values()]:
        validator.validate(policy)
    default = {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}
    sla = {"mode": "sla", "order": ["ispA"], "max_rtt_ms": 50, "max_loss_pct": 1.5, "max_jitter_ms": 0,
           "hysteresis_pct": 10, "recover_s": 30}
    full = {"classes": [{"name": "all-of_it", "match": {"protocol": 17, "src_ports": ["1-2"], "dst_ports": [1, 65535],
                                                        "dscp": 63, "sources": ["198.51.100.0/25", "2001:db8::1"]},
                         "egress": sla, "ingress": {"mode": "balance", "weights": {"ispA": 2}}}],
            "default": default}
    validator.validate(full)
    validator.validate({"default": default})

    def one_class(**fields: Any) -> dict[str, Any]:
        traffic_class = {"name": "x", "match": {"protocol": "tcp"}, "egress": FAILOVER_AB, "ingress": FAILOVER_AB}
        return {"classes": [{**traffic_class, **fields}], "default": default}

    wrong: list[Any] = [
        {"classes": []}, {"clases": [], "default": default}, {"default": {"egress": FAILOVER_AB}},
        one_class(name="default"), one_class(name="Web"), one_class(name="9x"), one_class(name="x" * 33),
        one_class(match={}), one_class(match={"dscp": 64}), one_class(match={"protocol": "sctp"}),
        one_class(match={"dst_ports": ["80"]}), one_class(match={"dst_ports": [0]}),
        one_class(match={"protocol": "tcp", "colour": "red"}),
        one_class(egress={"mode": "random", "order": ["ispA"]}), one_class(egress={"order": ["ispA"]}),
        one_class(egress={"mode": "failover", "order": ["ispA", "ispA"]}),
        one_class(egress={"mode": "failover", "order": []}),
        one_class(egress={"mode": "balance", "order": ["ispA"], "weights": {"ispA": 1}}),
        one_class(egress={"mode": "balance", "weights": {}}),
        one_class(egress={"mode": "balance", "weights": {"ispA": 101}}),
        one_class(egress={"mode": "sla", "order": ["ispA"]}),
        one_class(egress={**sla, "max_loss_pct": 101}), one_class(egress={**sla, "max_rtt_ms": 0.5}),
        one_class(egress={**sla, "recover_s": 3601}),
        one_class(egress={"mode": "failover", "order": ["ispA"], "max_rtt_ms": 50}),
        one_class(egress={"mode": "failover", "order": ["isp A"]}),
    ]
    wrong.append({**one_class(), "classes": one_class()["classes"] * 65})
    wrong.append(one_class(ingress=None))
    for bad in wrong:
        assert not validator.is_valid(bad), bad


# --- tokens and roles ---------------------------------------------------------------------------

OPERATOR_TOKEN, OWNER_TOKEN = "operator-secret", "owner-secret"


@pytest.fixture
def guarded(service: FakeService) -> RestApi:
    return RestApi(service, Authorizer([ApiToken("ops", Role.OPERATOR, digest(OPERATOR_TOKEN)),
                                        ApiToken("alice", Role.OWNER, digest(OWNER_TOKEN), homenet="home1")]))


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_valid_token_the_answer_is_401(guarded: RestApi, service: FakeService) -> None:
    for headers in ({}, _as("guess"), {"Authorization": "Basic b3BzOnNlY3JldA=="}):
        response = request(guarded, "PUT", POLICY, GOOD, **headers)
        error_of(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert service.put_calls == 0
    assert request(guarded, "GET", f"{API_PREFIX}/openapi.json").status_int == 200  # public


def test_the_operator_may_do_everything(guarded: RestApi) -> None:
    assert request(guarded, "GET", f"{API_PREFIX}/health", **_as(OPERATOR_TOKEN)).status_int == 200
    assert request(guarded, "PUT", POLICY, GOOD, **_as(OPERATOR_TOKEN)).status_int == 200
    created = request(guarded, "POST", f"{API_PREFIX}/homenets", {"name": "home7"}, **_as(OPERATOR_TOKEN))
    assert created.status_int == 201


def test_an_owner_reads_and_steers_only_their_homenet(guarded: RestApi, service: FakeService) -> None:
    owner = _as(OWNER_TOKEN)
    assert request(guarded, "GET", f"{API_PREFIX}/homenets/home1", **owner).status_int == 200
    assert request(guarded, "PUT", POLICY, GOOD, **owner).status_int == 200
    listed = json.loads(request(guarded, "GET", f"{API_PREFIX}/homenets", **owner).body)
    assert [h["name"] for h in listed] == ["home1"]
    for method, path, body in (("GET", f"{API_PREFIX}/homenets/home.2_x-y", None),
                               ("PUT", f"{API_PREFIX}/homenets/home.2_x-y/policy", GOOD),
                               ("GET", f"{API_PREFIX}/health", None),
                               ("DELETE", f"{API_PREFIX}/homenets/home1", None),
                               ("POST", f"{API_PREFIX}/homenets", {"name": "mine"})):
        error_of(request(guarded, method, path, body, **owner), 403)
    assert "home1" in service.policies and "mine" not in service.policies
