"""The controller's REST API: a plain WSGI/webob layer over an `MspService`.

Everything under /api/v1 answers JSON, errors included. Client input can only cause
4xx answers: the body is size-limited, strictly parsed and shape-checked before the
service sees it. A 500 means a bug in the service; it is logged with its traceback.

In Ryu:  mount(kwargs["wsgi"], service)  in the RyuApp's __init__, with
_CONTEXTS = {"wsgi": ryu.app.wsgi.WSGIApplication}.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import webob
from webob.request import DisconnectionError

from msp_controller.api.auth import AuthError, Authorizer
from msp_controller.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from msp_controller.api.metrics import ControllerMetrics
from msp_controller.api.openapi import (
    API_PREFIX,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    METRICS_PATH,
    NAME_PATTERN,
    openapi_document,
)
from msp_controller.model.errors import FieldError

LOG = logging.getLogger("msp.rest")

NAME_RE = re.compile(NAME_PATTERN)
MAX_INT_DIGITS = 30  # far beyond any port, weight or counter; keeps int() cheap


# --- the service the API exposes ------------------------------------------------------------

class NotFound(KeyError):
    """No such homenet: answered 404."""

    def __str__(self) -> str:  # KeyError's str() quotes its argument
        return str(self.args[0]) if self.args else "not found"


class MspService(Protocol):
    """What the controller core offers the API; the shapes are in openapi.py.

    Raise NotFound for an unknown homenet and FieldError (or any ValueError with
    .where/.problem) for a policy the core refuses; anything else is a 500.
    """

    def health(self) -> dict[str, Any]: ...  # {"status": "ok"|"degraded", "switches": {...}, "uptime_s": s}

    # Every configured switch by datapath id, in pages (FieldError for a bad after or limit).
    def list_switches(self, after: str | None, limit: str | None) -> dict[str, Any]: ...

    def list_homenets(self) -> list[dict[str, Any]]: ...  # [{"name": ..., "active_egress": ...}]

    def get_homenet(self, name: str) -> dict[str, Any]: ...  # prefixes, uplinks, paths, classes

    def get_policy(self, name: str) -> dict[str, Any]: ...

    # {"policy": ..., "applied": True, "applied_ms": ms} once in the data plane (answered 200),
    # or {"applied": False, "pending": [switches not connected]} (answered 202).
    def put_policy(self, name: str, body: Any) -> dict[str, Any]: ...

    # Homenets at run time; the same answers as put_policy (applied or pending).
    def create_homenet(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace_homenet(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def delete_homenet(self, name: str) -> dict[str, Any]: ...

    def set_uplink_address(self, name: str, uplink: str, address: Any) -> dict[str, Any]: ...

    # An edge's downstream tc commands: all (in pages after a name), or the homenets changed
    # since a version (NotFound
    # for an unknown edge; FieldError for a bad version).
    def edge_shaping(self, edge: str, since: str | None, after: str | None = None) -> dict[str, Any]: ...


# --- answers --------------------------------------------------------------------------------

class ApiError(Exception):
    """An answer other than success; raised anywhere below `RestApi.handle`."""

    def __init__(self, status: int, message: str, where: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.where = where
        self.headers = headers or {}

    def response(self) -> webob.Response:
        error: dict[str, Any] = {"status": self.status}
        if self.where:
            error["where"] = self.where
        error["message"] = self.message
        response = json_response(self.status, {"error": error})
        response.headers.update(self.headers)
        return response


def json_response(status: int, payload: Any) -> webob.Response:
    # allow_nan=False: NaN/Infinity are not JSON, a generic client would choke on them.
    # ASCII output: no encoding trouble whatever strings the service or client produced.
    body = json.dumps(payload, allow_nan=False, ensure_ascii=True) + "\n"
    return webob.Response(body=body.encode("ascii"), status=status, content_type="application/json")


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


# --- reading a JSON body --------------------------------------------------------------------

class _Rejected(ValueError):
    """Raised from inside json.loads by the hooks below."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # json.loads would silently keep the last one
            raise _Rejected(f"duplicate key {key[:80]!r}")
        obj[key] = value
    return obj


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Rejected(f"integer with {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Rejected(f"number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _Rejected(f"{name} is not valid JSON")


def _content_type(request: webob.Request) -> str:
    raw_headers = request.environ.get("headers_raw")
    if isinstance(raw_headers, tuple):  # eventlet puts "text/plain" in CONTENT_TYPE when there is none
        return next((str(value) for key, value in raw_headers if str(key).lower() == "content-type"), "")
    return str(request.environ.get("CONTENT_TYPE") or "")


def _check_media_type(request: webob.Request) -> None:
    header = _content_type(request).strip()
    if not header:  # curl -d without -H, and many scripts: assume JSON
        return
    media, *params = header.split(";")
    if media.strip().lower() != "application/json":
        hint = " (curl -d sends that: add -H 'Content-Type: application/json')" \
            if media.strip().lower() == "application/x-www-form-urlencoded" else ""
        raise ApiError(415, f"Content-Type must be application/json, not {media.strip()[:80]!r}{hint}")
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "JSON bodies must be UTF-8")


def _body_stream(request: webob.Request) -> Any:
    environ = request.environ
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if request.content_length is not None or not chunked:
        return request.body_file
    stream = environ.get("wsgi.input")
    # webob reads a chunked body only if the server sets wsgi.input_terminated; eventlet
    # (under Ryu) does not, but its input de-chunks and ends by itself.
    if environ.get("wsgi.input_terminated") or getattr(stream, "chunked_input", False):
        return stream
    raise ApiError(411, "this server cannot read chunked request bodies; send a Content-Length")


def _read_body(request: webob.Request) -> bytes:
    declared = str(request.environ.get("CONTENT_LENGTH") or "").strip()
    if declared and not re.fullmatch(r"[0-9]+", declared):  # webob would quietly read nothing
        raise ApiError(400, f"Content-Length {declared[:20]!r} is not a byte count")
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        raw: bytes = _body_stream(request).read(MAX_BODY_BYTES + 1)  # bounded whatever the headers say
    except DisconnectionError:
        raise ApiError(400, "request body ended before its Content-Length") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is larger than the limit of {MAX_BODY_BYTES} bytes")
    return raw


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"request body is not UTF-8 text: invalid byte at offset {err.start}") from None
    if not text.strip():
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_integer,
                          parse_float=_finite, parse_constant=_constant)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"request body is not JSON: {err.msg} at line {err.lineno} "
                            f"column {err.colno} (char {err.pos})") from None
    except _Rejected as err:
        raise ApiError(400, f"request body is not acceptable JSON: {err}") from None
    except RecursionError:
        raise ApiError(400, f"request body is nested more than {MAX_JSON_DEPTH} levels deep") from None


def _child(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" is legal JSON but not text: it would break logs and files
        raise ApiError(400, "string contains an unpaired UTF-16 surrogate", where or None) from None


def _check_structure(value: Any) -> None:
    """Depth and text checks, iteratively: the service may recurse, this must not."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"nested more than {MAX_JSON_DEPTH} levels deep", where or None)
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, where)
                stack.append((child, _child(where, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_json_object(request: webob.Request) -> dict[str, Any]:
    """The request's body as a JSON object, or an ApiError saying what is wrong with it."""
    _check_media_type(request)
    value = _parse_json(_read_body(request))
    _check_structure(value)
    if not isinstance(value, dict):
        raise ApiError(400, f"request body must be a JSON object, not {_json_type(value)}")
    return value


# --- routing --------------------------------------------------------------------------------

Handler = Callable[[webob.Request, dict[str, str]], webob.Response]


@dataclass(frozen=True)
class Route:
    template: str  # as in the OpenAPI document: /api/v1/homenets/{name}
    methods: dict[str, Handler]
    public: bool = False  # served without a token (the API's own description)
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Any segment matches here; the name's own rule is checked after, for a clear 404.
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex + r"\Z"))


class RestApi:
    """The WSGI application. `handle` is the same without the WSGI plumbing, for tests."""

    def __init__(self, service: MspService, auth: Authorizer | None = None,
                 metrics: ControllerMetrics | None = None) -> None:
        self.service = service
        self.auth = auth or Authorizer(())
        # A CoreService carries the metrics of its core; else only the REST counters.
        carried = getattr(service, "metrics", None)
        self.metrics = metrics or (carried if isinstance(carried, ControllerMetrics)
                                   else ControllerMetrics(process=False))
        self._document = openapi_document()
        named = f"{API_PREFIX}/homenets/{{name}}"
        self.routes: tuple[Route, ...] = (
            Route(f"{API_PREFIX}/health", {"GET": self._health}),
            Route(f"{API_PREFIX}/switches", {"GET": self._switches}),  # the operator's
            Route(f"{API_PREFIX}/homenets", {"GET": self._homenets, "POST": self._create_homenet}),
            Route(named, {"GET": self._homenet, "PUT": self._replace_homenet, "DELETE": self._delete_homenet}),
            Route(f"{named}/policy", {"GET": self._get_policy, "PUT": self._put_policy}),
            Route(f"{named}/uplinks/{{uplink}}", {"PUT": self._put_uplink_address}),  # the operator's
            Route(f"{API_PREFIX}/edges/{{edge}}/shaping", {"GET": self._edge_shaping}),  # the operator's
            Route(f"{API_PREFIX}/openapi.json", {"GET": self._openapi}, public=True),
            Route(METRICS_PATH, {"GET": self._metrics}),  # Prometheus, with the operator's token
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.handle(webob.Request(environ))
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def handle(self, request: webob.Request) -> webob.Response:
        started = time.perf_counter()
        response = self._answer(request)
        self.metrics.rest_request(request.method, response.status_int, time.perf_counter() - started)
        return response

    def _answer(self, request: webob.Request) -> webob.Response:
        try:
            return self._dispatch(request)
        except ApiError as err:
            LOG.debug("%s %s: %d %s", request.method, _raw_path(request), err.status, err.message)
            return err.response()
        except Exception:  # client input never gets here: this is a bug, logged
            LOG.exception("msp: %s %s failed", request.method, _raw_path(request))
            return ApiError(500, "internal error in the controller; see its log").response()

    def _dispatch(self, request: webob.Request) -> webob.Response:
        path = _raw_path(request)
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            params = match.groupdict()
            name = params.get("name")
            if name is not None and not NAME_RE.fullmatch(name):  # match() would allow "x\n"
                raise ApiError(404, f"no homenet named {_readable(name)[:80]!r}: "
                                    "names use only A-Z a-z 0-9 _ . -")
            for kind in ("uplink", "edge"):
                value = params.get(kind)
                if value is not None and not NAME_RE.fullmatch(value):
                    raise ApiError(404, f"no {kind} named {_readable(value)[:80]!r}: "
                                        "names use only A-Z a-z 0-9 _ . -")
            handler = route.methods.get(request.method)
            if handler is None:
                allow = ", ".join(route.methods)
                raise ApiError(405, f"{request.method} is not allowed here; use {allow}",
                               headers={"Allow": allow})
            if route.public:
                return handler(request, params)
            try:
                principal = self.auth.authenticate(request.headers.get("Authorization"))
                self.auth.authorize(principal, request.method, route.template, name)
            except AuthError as err:
                headers = {"WWW-Authenticate": 'Bearer realm="msp"'} if err.status == 401 else {}
                raise ApiError(err.status, err.message, headers=headers) from None
            params["_homenet_scope"] = principal.homenet or ""
            return handler(request, params)
        raise ApiError(404, f"no such path {_readable(path)[:200]!r}; see {API_PREFIX}/openapi.json")

    # --- handlers ---------------------------------------------------------------------

    def _health(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return _serve(self.service.health)

    def _switches(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return _serve(lambda: self.service.list_switches(request.GET.get("after"), request.GET.get("limit")))

    def _homenets(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        scope = params.get("_homenet_scope")
        if scope:  # an owner sees their own homenet only
            return _serve(lambda: [h for h in self.service.list_homenets() if h.get("name") == scope])
        return _serve(self.service.list_homenets)

    def _homenet(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return _serve(lambda: self.service.get_homenet(params["name"]))

    def _create_homenet(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        body = read_json_object(request)
        return _serve(lambda: self.service.create_homenet(body), from_client=True,
                      status=lambda result: 201 if result.get("applied") else 202)

    def _replace_homenet(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        body = read_json_object(request)
        return _serve(lambda: self.service.replace_homenet(params["name"], body), from_client=True,
                      status=lambda result: 200 if result.get("applied") else 202)

    def _delete_homenet(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return _serve(lambda: self.service.delete_homenet(params["name"]),
                      status=lambda result: 200 if result.get("applied") else 202)

    def _edge_shaping(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        since, after = request.GET.get("since"), request.GET.get("after")
        if after is not None and not NAME_RE.fullmatch(after):
            raise ApiError(400, f"{_readable(after)[:80]!r} is not a homenet name", "after")
        return _serve(lambda: self.service.edge_shaping(params["edge"], since, after))

    def _get_policy(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return _serve(lambda: self.service.get_policy(params["name"]))

    def _put_policy(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        body = read_json_object(request)
        return _serve(lambda: self.service.put_policy(params["name"], body), from_client=True,
                      status=lambda result: 200 if result.get("applied") else 202)

    def _put_uplink_address(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        body = read_json_object(request)
        unknown = sorted(set(body) - {"address"})
        if unknown or "address" not in body:
            raise ApiError(400, "the body is {\"address\": \"<IPv4>\" or null}"
                           + (f"; unknown field {unknown[0]!r}" if unknown else ""), where=
                           f"address.{unknown[0]}" if unknown else "address")
        return _serve(lambda: self.service.set_uplink_address(params["name"], params["uplink"], body["address"]),
                      from_client=True, status=lambda result: 200 if result.get("applied") else 202)

    def _openapi(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        return json_response(200, self._document)

    def _metrics(self, request: webob.Request, params: dict[str, str]) -> webob.Response:
        response = webob.Response(body=self.metrics.exposition(), status=200)
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response


def _raw_path(request: webob.Request) -> str:
    # PATH_INFO is already URL-decoded, as latin-1; webob's path_info would re-decode it as
    # UTF-8 and raise on %FF. Names are ASCII, so matching the raw form is exact.
    path: str = request.environ.get("PATH_INFO", "")
    return path


def _readable(raw: str) -> str:
    """The raw (latin-1) form back as the text the client most likely meant, for messages."""
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def _serve(call: Callable[[], Any], from_client: bool = False,
           status: Callable[[Any], int] = lambda result: 200) -> webob.Response:
    """Call the service and answer its result, mapping its documented exceptions.

    A plain ValueError is the client's fault only when the call took the client's body;
    from a GET it is a bug, and falls through to the 500 in `handle`.
    """
    try:
        result = call()
    except NotFound as err:
        raise ApiError(404, str(err)) from None
    except ValueError as err:
        if not (from_client or isinstance(err, FieldError) or _has_location(err)):
            raise
        raise ApiError(400, str(getattr(err, "problem", err)), _text(getattr(err, "where", None))) from None
    return json_response(status(result), result)


def _has_location(err: ValueError) -> bool:
    return hasattr(err, "where") and hasattr(err, "problem")


# --- Ryu --------------------------------------------------------------------------------------

@functools.cache
def _ryu_controller() -> type:
    # Imported late: ryu.app.wsgi needs eventlet's shims, which only the Ryu process needs.
    from ryu.app.wsgi import ControllerBase, route

    class MspRestController(ControllerBase):
        """Forwards everything under the API prefix to RestApi, which does its own routing."""

        # Any tail, newlines included: Routes anchors its regex with "$" and "." stops at a
        # newline, so "{tail:.*}" missed /api/v1/homenets/a%0Ab and Ryu sent its own 404.
        @route("msp_api", API_PREFIX + "{tail}", requirements={"tail": r"[\s\S]*"})
        def forward(self, req: webob.Request, **_urlvars: Any) -> webob.Response:
            api: RestApi = self.data["api"]
            return api.handle(req)

        @route("msp_metrics", METRICS_PATH)
        def metrics(self, req: webob.Request, **_urlvars: Any) -> webob.Response:
            api: RestApi = self.data["api"]
            return api.handle(req)

    return MspRestController


def mount(wsgi_app: Any, service: MspService, auth: Authorizer | None = None,
          metrics: ControllerMetrics | None = None) -> RestApi:
    """Serve the API (and /metrics) on Ryu's WSGIApplication (the RyuApp's "wsgi" context)."""
    api = RestApi(service, auth, metrics)
    wsgi_app.register(_ryu_controller(), {"api": api})
    return api
