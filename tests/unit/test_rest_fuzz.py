"""Fuzzing the REST API from its own OpenAPI document, through Ryu's WSGI mount, over a real
core and service (fake switches, a MemoryStore).

Requests are generated from `openapi_document()`: its paths and methods, names that do and
do not follow NAME_PATTERN (newlines, slashes, bytes that are not UTF-8), bodies built from
the request schemas (with values of the reference homenet, so that many are accepted) and
then broken, plus garbage, deep, huge and non-UTF-8 bodies, wrong content types and lengths,
and good, bad and missing tokens. For every request:

  * never a 5xx;
  * every error is JSON in the API's error shape, with Allow on a 405 and
    WWW-Authenticate on a 401; an unknown path is a 404, an undocumented method a 405, and
    a documented operation answers only the codes the document lists for it (success bodies
    match their documented schema);
  * after a 4xx, nothing changed: every homenet's full GET, every policy, the store, and
    no message went to any switch;
  * without a valid token only the public document answers; a homenet's owner changes
    nothing but their homenet's policy.

The runs are bounded (max_examples) so the file takes seconds; hypothesis keeps no example
database in the repository (database=None), so a failure prints its example instead.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import pathlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import webob
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st
from ryu.app.wsgi import WSGIApplication

from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.openapi import API_PREFIX, MAX_BODY_BYTES, NAME_PATTERN, openapi_document
from msp_controller.api.rest import mount
from msp_controller.api.service import CoreService
from msp_controller.core import Effects
from msp_controller.model.access import ApiToken, Role
from msp_controller.model.config import MspConfig, parse_config
from msp_controller.store import MemoryStore
from tests.harness import Harness

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCUMENT = openapi_document()
OPERATOR_TOKEN, OWNER_TOKEN = "fuzz-operator-secret", "fuzz-owner-secret"
OWNED = "home1"
# MSP_FUZZ_EXAMPLES=5000 for a deeper hunt; the default keeps the suite quick.
FUZZ = settings(max_examples=int(os.environ.get("MSP_FUZZ_EXAMPLES", "100")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the world: a core on fake switches, its service, the API mounted on Ryu's WSGI app ---------

@functools.cache
def _reference() -> tuple[dict[str, Any], MspConfig]:
    with open(ROOT / "etc" / "reference.toml", "rb") as handle:
        data = tomllib.load(handle)
    return data, parse_config(data)


@dataclass
class World:
    harness: Harness
    service: CoreService
    store: MemoryStore
    wsgi: WSGIApplication
    guarded: bool  # tokens configured


def build_world(guarded: bool) -> World:
    harness = Harness(_reference()[1])
    harness.connect_all()
    harness.learn_hosts_and_upstream()

    def confirm(effects: Effects) -> list[int]:
        """The fake switches take what is sent to them; the others stay pending."""
        present = {dpid: messages for dpid, messages in effects.items() if dpid in harness.network.switches}
        harness.apply(present)
        return sorted(set(effects) - set(present))

    store = MemoryStore()
    service = CoreService(harness.core, confirm, clock=lambda: harness.now, store=store)
    tokens = [ApiToken("ops", Role.OPERATOR, digest(OPERATOR_TOKEN)),
              ApiToken("owner", Role.OWNER, digest(OWNER_TOKEN), homenet=OWNED)] if guarded else []
    wsgi = WSGIApplication()
    mount(wsgi, service, Authorizer(tokens))
    return World(harness, service, store, wsgi, guarded)


def snapshot(world: World) -> dict[str, Any]:
    """What a client (or a restart) can see: every homenet in full, every policy, the store,
    and how many messages the switches have been sent."""
    service = world.service
    names = sorted(h["name"] for h in service.list_homenets())
    return {"list": service.list_homenets(), "homenets": {n: service.get_homenet(n) for n in names},
            "policies": {n: service.get_policy(n) for n in names}, "store": world.store.load(),
            "messages": len(world.harness.sent)}


# --- requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    method: str
    path: str  # PATH_INFO as a WSGI server hands it over: URL-decoded bytes, read as latin-1
    body: bytes | None = None
    content_type: str | None = None
    content_length: str | None = None  # None: the body's length
    authorization: str | None = None

    def __repr__(self) -> str:  # keep a falsifying example readable
        body = self.body if self.body is None or len(self.body) < 200 else self.body[:200] + b"..."
        return (f"Call({self.method!r}, {self.path!r}, body={body!r}, content_type={self.content_type!r}, "
                f"content_length={self.content_length!r}, authorization={self.authorization!r})")


def send(world: World, call: Call) -> webob.Response:
    request = webob.Request.blank("/", method=call.method)
    request.environ["PATH_INFO"] = call.path
    if call.body is not None:
        request.body = call.body
    if call.content_type is not None:
        request.environ["CONTENT_TYPE"] = call.content_type
    if call.content_length is not None:
        request.environ["CONTENT_LENGTH"] = call.content_length
    if call.authorization is not None:
        request.environ["HTTP_AUTHORIZATION"] = call.authorization
    response: webob.Response = request.get_response(world.wsgi)
    return response


# --- strategies from the document ----------------------------------------------------------------

def _resolve(ref: str) -> dict[str, Any]:
    node: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


@functools.cache
def _examples() -> dict[str, list[Any]]:
    """Property name -> values the reference config and a second homenet use for it, so
    that generated bodies often pass validation and reach the core."""
    data = _reference()[0]
    home1 = copy.deepcopy(data["homenets"][0])
    home2 = copy.deepcopy(home1)
    home2.update(name="home2", id=2, datapath_id=0x201, prefixes=["203.0.113.128/25"],
                 lan_ipv4="203.0.113.129/25", edges=["edge2"])
    del home2["lan_ipv6"]
    for index, uplink in enumerate(home2["uplinks"]):
        uplink["underlay_datapath_id"] = 0x211 + index
    policy = {"classes": [
        {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"], "dscp": 46,
                                    "sources": ["198.51.100.0/28"]},
         "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 50, "max_loss_pct": 2},
         "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}},
        {"name": "bulk", "match": {"protocol": "tcp", "dst_ports": [80, 443, "8000-8080"]},
         "egress": {"mode": "balance", "weights": {"ispA": 3, "ispB": 1}},
         "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}}],
        "default": {"egress": {"mode": "failover", "order": ["ispA", "ispB"]},
                    "ingress": {"mode": "failover", "order": ["ispB"]}}}
    examples: dict[str, list[Any]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if child not in examples.setdefault(key, []):
                    examples[key].append(child)
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    for source in (home1, home2, policy):
        walk(source)
    # Whole request bodies, under their schemas' names (see bodies()).
    examples["HomenetSpec"] = [home1, home2]
    examples["Policy"] = [policy, {"default": policy["default"]}]
    return examples


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
ANY_JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def from_schema(schema: dict[str, Any], name: str | None = None) -> st.SearchStrategy[Any]:
    """Values shaped by an OpenAPI 3.0 schema (mostly valid; `not`, cross-field and
    semantic rules are left to the server), mixed with the examples for property `name`."""
    generated = _from_schema(schema)
    known = _examples().get(name or "")
    if known:
        return st.one_of(st.sampled_from(known).map(copy.deepcopy), generated)
    return generated


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return st.deferred(lambda: _from_schema(_resolve(schema["$ref"])))
    if "oneOf" in schema:
        return st.one_of([_from_schema(option) for option in schema["oneOf"]])
    strategy = _typed(schema)
    return st.one_of(st.none(), strategy) if schema.get("nullable") else strategy


def _typed(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema)
    if kind == "array":
        low = schema.get("minItems", 0)
        items = _from_schema(schema.get("items", {}))
        return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", low + 3), low + 3),
                        unique_by=(lambda v: json.dumps(v, sort_keys=True)) if schema.get("uniqueItems") else None)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=16)
    if kind == "integer":
        return st.integers(schema.get("minimum", -2**40), schema.get("maximum", 2**40))
    if kind == "number":
        low, high = schema.get("minimum", -1e9), schema.get("maximum", 1e9)
        return st.integers(int(low), int(high)) | st.floats(low, high, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    return ANY_JSON


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {key: from_schema(child, key) for key, child in properties.items()}
    extra = schema.get("additionalProperties")

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        value = {key: draw(strategy) for key, strategy in fields.items()
                 if key in required or draw(st.booleans())}
        if isinstance(extra, dict):
            keys = st.sampled_from(["ispA", "ispB"]) | st.text(max_size=6)
            value.update(draw(st.dictionaries(keys, _from_schema(extra), max_size=3)))
        return value

    return build()


@st.composite
def broken(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one thing wrong in it: a key dropped or added, a part replaced."""
    value = copy.deepcopy(value)
    holders: list[dict[str, Any] | list[Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict | list):
            holders.append(node)
            for child in (node.values() if isinstance(node, dict) else node):
                collect(child)

    collect(value)
    if not holders:
        return draw(ANY_JSON)
    holder = draw(st.sampled_from(holders))
    action = draw(st.sampled_from(["drop", "add", "replace"]))
    if isinstance(holder, dict):
        if action == "drop" and holder:
            del holder[draw(st.sampled_from(sorted(holder)))]
        elif action == "add" or not holder:
            holder[draw(st.text(max_size=8))] = draw(ANY_JSON)
        else:
            holder[draw(st.sampled_from(sorted(holder)))] = draw(ANY_JSON)
    elif holder:
        index = draw(st.integers(0, len(holder) - 1))
        if action == "drop":
            del holder[index]
        else:
            holder[index] = draw(ANY_JSON)
    else:
        holder.append(draw(ANY_JSON))
    return value


def _request_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    body = operation.get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None  # a $ref


def _nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.integers(1, 3000).map(_nested),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3).map(lambda n: b"{" + b" " * (MAX_BODY_BYTES + n) + b"}"),  # over the limit
    st.sampled_from([b"", b" ", b"null", b"[]", b'"x"', b"1e999", b"NaN", b'{"a": Infinity}',
                     b'{"a": 1, "a": 2}', b'{"a": "\\ud800"}', b"1" * 5000, b'{"a": 1}xyz',
                     b"\xef\xbb\xbf{}", '{"default": "é"}'.encode("latin-1"),
                     '{"default": {}}'.encode("utf-16")]),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda index: table[index])


def bodies(schema: dict[str, Any] | None) -> st.SearchStrategy[bytes | None]:
    """A body for an operation: built from its schema (and often broken), or anything."""
    name = "" if schema is None else schema["$ref"].rsplit("/", 1)[-1]
    values = st.just({}) if schema is None else from_schema(schema, name)
    whole = st.sampled_from(_examples().get(name) or [{}])  # the bodies that the reference uses
    return weighted(
        (4, whole.map(lambda v: json.dumps(v).encode())),
        (3, values.map(lambda v: json.dumps(v).encode())),
        (3, st.one_of(whole, values).flatmap(broken).map(lambda v: json.dumps(v).encode())),
        (1, ANY_JSON.map(lambda v: json.dumps(v).encode())),
        (2, RAW_BODIES),
        (1, st.none()),
    )


def _wire(text: str | bytes) -> str:
    """What a WSGI server puts in PATH_INFO for this URL-decoded path."""
    return (text.encode("utf-8") if isinstance(text, str) else text).decode("latin-1")


ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=10)
NAMES = weighted((8, st.just(OWNED)),
                 (2, st.sampled_from(["home2", "nohome", "home1 ", "home1\n", "a\nb", "..", "%2F", ""])),
                 (1, st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)),
                 (1, ODD_TEXT), (1, st.binary(max_size=8)))
METHODS = st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                           "get", "Put", "BREW", "M-SEARCH"])
CONTENT_TYPES = weighted(
    (6, st.sampled_from([None, "application/json"])),
    (3, st.sampled_from(["application/json; charset=utf-8", "APPLICATION/JSON", 'application/json; charset="UTF-8"',
                         "application/json; charset=latin-1", "text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "", ";", "application/json;;", "application/jsonx",
                         "application/json; charset"])),
    (1, st.text(st.characters(max_codepoint=255), max_size=24)))
LENGTHS = weighted((8, st.none()),
                   (1, st.sampled_from(["", "abc", "-1", "1e3", " 5", "99999999999999999999", "0x10"])),
                   (1, st.integers(0, 300).map(str)))
TOKENS = weighted(
    (6, st.sampled_from([f"Bearer {OPERATOR_TOKEN}", f"Bearer {OWNER_TOKEN}"])),
    (3, st.sampled_from([None, f"bearer {OPERATOR_TOKEN}", f"Bearer  {OWNER_TOKEN} ", "Bearer guess", "Bearer ",
                         "Bearer", "Basic b3BzOnNlY3JldA==", OPERATOR_TOKEN])),
    (1, st.text(st.characters(max_codepoint=255), max_size=30)))
OPERATIONS = [(path, method.upper(), operation) for path, item in DOCUMENT["paths"].items()
              for method, operation in item.items() if method != "parameters"]


@st.composite
def paths(draw: st.DrawFn, template: str) -> str:
    path = _wire(template) if "{name}" not in template else \
        _wire(template.replace("{name}", "\0")).replace("\0", _wire(draw(NAMES)))
    variant = draw(st.sampled_from(["as is"] * 15 + ["slash", "suffix", "prefix case", "double slash", "bare"]))
    if variant == "slash":
        return path + "/"
    if variant == "suffix":
        return path + _wire(draw(ODD_TEXT))
    if variant == "prefix case":
        return path.replace(API_PREFIX, API_PREFIX.upper(), 1)
    if variant == "double slash":
        return path.replace("/", "//", draw(st.integers(1, 4)))
    if variant == "bare":
        return API_PREFIX + draw(st.sampled_from(["", "/", "/homenets/", "/nothing", "x"]))
    return path


@st.composite
def calls(draw: st.DrawFn) -> Call:
    template, method, operation = draw(st.sampled_from(OPERATIONS))
    if draw(st.integers(0, 5)) == 0:
        method = draw(METHODS)
    return Call(method=method, path=draw(paths(template)), body=draw(bodies(_request_schema(operation))),
                content_type=draw(CONTENT_TYPES), content_length=draw(LENGTHS), authorization=draw(TOKENS))


# --- what every answer must be --------------------------------------------------------------------

# A name outside NAME_PATTERN is no homenet's: such a path is a 404 whatever the method.
_NAME = NAME_PATTERN.removeprefix("^").removesuffix("$")
# Every path parameter ({name}, {uplink}) follows the same rule.
_TEMPLATES = {path: re.compile(re.sub(r"\\\{\w+\\\}", lambda _: _NAME, re.escape(path)) + r"\Z")
              for path in DOCUMENT["paths"]}


def documented_path(path: str) -> str | None:
    return next((template for template, pattern in _TEMPLATES.items() if pattern.match(path)), None)


@functools.cache
def _validator(template: str, method: str, status: str) -> Callable[[Any], None]:
    import openapi_schema_validator as oas

    response = DOCUMENT["paths"][template][method.lower()]["responses"][status]
    if "$ref" in response:
        response = _resolve(response["$ref"])
    schema = response["content"]["application/json"]["schema"]
    return oas.OAS30Validator({**schema, "components": DOCUMENT["components"]}).validate  # type: ignore[no-any-return]


def check_answer(call: Call, response: webob.Response) -> None:
    status = response.status_int
    assert status < 500, f"{status} for {call!r}: {response.body[:300]!r}"
    if not call.path.startswith(API_PREFIX):
        return  # another application's space (Ryu answers those)
    assert response.content_type == "application/json", f"{response.content_type} for {call!r}"
    # HEAD: the same answer without its body (webob drops it, as HTTP wants).
    payload = json.loads(response.body) if call.method != "HEAD" else {"error": {"status": status, "message": "-"}}
    template = documented_path(call.path)
    if status >= 400:
        assert set(payload) == {"error"}, payload
        error = payload["error"]
        assert set(error) <= {"status", "where", "message"} and error["status"] == status, payload
        assert isinstance(error["message"], str) and error["message"], payload
        assert isinstance(error.get("where", ""), str), payload
    if template is None:
        assert status == 404, f"{status} for an undocumented path: {call!r}"
        return
    documented = [m.upper() for m in DOCUMENT["paths"][template] if m != "parameters"]
    if call.method not in documented:
        assert status == 405, f"{status} for {call.method} on {template}: {call!r}"
        assert response.headers["Allow"] == ", ".join(documented)
        return
    assert str(status) in DOCUMENT["paths"][template][call.method.lower()]["responses"], \
        f"{status} is not documented for {call.method} {template}: {call!r}"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), call
    if status < 400:
        _validator(template, call.method, str(status))(payload)


def _valid_token(call: Call) -> str | None:
    scheme, _, token = (call.authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() in (OPERATOR_TOKEN, OWNER_TOKEN):
        return token.strip()
    return None


def run(world: World, sequence: list[Call]) -> None:
    for call in sequence:
        before = snapshot(world)
        response = send(world, call)
        if currently_in_test_context():  # --hypothesis-show-statistics: what the fuzzer reached
            event(f"{call.method} {documented_path(call.path)} {response.status_int}")
        check_answer(call, response)
        after = snapshot(world)
        if response.status_int >= 400:
            assert after == before, f"{response.status_int} for {call!r} changed the state"
        if not world.guarded:
            continue
        token = _valid_token(call)
        if token is None:
            assert after == before, f"{call!r} without a valid token changed the state"
            assert response.status_int >= 400 or documented_path(call.path) == f"{API_PREFIX}/openapi.json", call
        elif token == OWNER_TOKEN:
            others = {key: {n: v for n, v in before[key].items() if n != OWNED} for key in ("homenets", "policies")}
            assert others == {key: {n: v for n, v in after[key].items() if n != OWNED} for key in others}, call
            assert set(before["homenets"]) == set(after["homenets"]), call
            if before["policies"].get(OWNED) == after["policies"].get(OWNED):
                assert after == before, f"the owner's {call!r} changed something other than their policy"


# --- the tests ----------------------------------------------------------------------------------

NEWLINE_NAME = Call("GET", f"{API_PREFIX}/homenets/a\nb")  # Ryu's route once missed it: an HTML 404


@FUZZ
@given(st.lists(calls(), min_size=1, max_size=4))
@example([NEWLINE_NAME, Call("PUT", f"{API_PREFIX}/homenets/home1\n/policy", b"{}", "application/json")])
def test_open_api_answers_json_and_keeps_state_on_errors(sequence: list[Call]) -> None:
    run(build_world(guarded=False), sequence)


@FUZZ
@given(st.lists(calls(), min_size=1, max_size=4))
@example([Call("DELETE", f"{API_PREFIX}/homenets/home1", authorization=f"Bearer {OWNER_TOKEN}"),
          Call("PUT", f"{API_PREFIX}/homenets/home1/policy", b"{}", authorization="Bearer guess")])
def test_tokens_are_enforced_in_json_and_keep_state(sequence: list[Call]) -> None:
    run(build_world(guarded=True), sequence)


@settings(max_examples=40, deadline=None, database=None)
@given(name=st.one_of(ODD_TEXT, st.binary(max_size=8)),
       suffix=st.sampled_from(["", "/policy", "/", "/policy/", "\n", "/x"]),
       method=METHODS)
def test_any_name_under_the_prefix_is_answered_in_json(name: str | bytes, suffix: str, method: str) -> None:
    world = build_world(guarded=False)
    call = Call(method, _wire(f"{API_PREFIX}/homenets/") + _wire(name) + suffix)
    run(world, [call])


def test_a_good_sequence_changes_what_it_says() -> None:
    """The oracle is not vacuous: an accepted request does change the state it compares."""
    world = build_world(guarded=False)
    home1, home2 = _examples()["HomenetSpec"]
    before = snapshot(world)
    call = Call("POST", f"{API_PREFIX}/homenets", json.dumps(home2).encode(), "application/json")
    created = send(world, call)
    check_answer(call, created)
    assert created.status_int in (201, 202) and set(snapshot(world)["homenets"]) == {"home1", "home2"}
    assert snapshot(world) != before
    clash = Call("POST", f"{API_PREFIX}/homenets", json.dumps(home1).encode(), "application/json")
    run(world, [clash])  # a 400 that changes nothing, as the fuzzer checks it
    assert send(world, clash).status_int == 400
