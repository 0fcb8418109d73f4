"""The dashboard over HTTP, under /dashboard on the controller's REST server.

  GET  /dashboard/                  the page (HTML; its JS and CSS under /dashboard/static/)
  POST /dashboard/login             {"token": ...}: sets the session cookie (session.py)
  POST /dashboard/logout            clears it
  GET  /dashboard/api/me            who is logged in
  GET  /dashboard/api/homenets      ?q=&status=&page=&per_page=: one page of the list
  GET  /dashboard/api/homenets/{n}  one homenet in full, with its recent graph points
  GET  /dashboard/events            ?homenets=a,b,c&detail=n: server-sent events (feed.py)

Everything but the page's own files needs a session cookie or an Authorization header:
none is 401; an owner asking for another homenet is 403.
"""
from __future__ import annotations

import functools
import importlib.resources
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import webob

from msp_controller.api.auth import AuthError, Authorizer, Principal
from msp_controller.api.rest import NAME_RE, ApiError, json_response, read_json_object
from msp_controller.dashboard import views
from msp_controller.dashboard.feed import MAX_WATCHED, Event, EventFeed, FeedFull, Subscriber
from msp_controller.dashboard.live import DashboardPublisher
from msp_controller.dashboard.session import COOKIE, Sessions
from msp_controller.model.access import Role

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

LOG = logging.getLogger("msp.dashboard")
PREFIX = "/dashboard"
STATIC = {"index.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}
KEEPALIVE_S = 15.0  # a comment this often: proxies keep the stream, a gone browser is noticed
# The page loads nothing from elsewhere, and runs no inline script.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"


@functools.cache
def static_file(name: str) -> bytes:
    return importlib.resources.files("msp_controller.dashboard").joinpath("static", name).read_bytes()


class Dashboard:
    @classmethod
    def create(cls, core: MspCore, auth: Authorizer, clock: Callable[[], float] = time.monotonic) -> Dashboard:
        """The dashboard of a core: its feed, the publisher the shell feeds, its logins."""
        feed = EventFeed()
        return cls(core, Sessions(auth), feed, DashboardPublisher(core, feed, clock), clock)

    def __init__(self, core: MspCore, sessions: Sessions, feed: EventFeed, publisher: DashboardPublisher,
                 clock: Callable[[], float]) -> None:
        self.core = core
        self.sessions = sessions
        self.feed = feed
        self.publisher = publisher
        self.clock = clock

    def handle(self, request: webob.Request) -> webob.Response:
        try:
            return self._dispatch(request, request.environ.get("PATH_INFO", ""))
        except ApiError as err:
            return err.response()
        except AuthError as err:
            return ApiError(err.status, err.message).response()
        except Exception:  # a bug: logged, answered 500, the controller carries on
            LOG.exception("msp: dashboard %s %s failed", request.method, request.path_info[:200])
            return ApiError(500, "internal error in the dashboard; see the controller's log").response()

    def _dispatch(self, request: webob.Request, path: str) -> webob.Response:
        method = request.method
        if path in (PREFIX, PREFIX + "/"):
            _only(method, "GET")
            if path == PREFIX:
                return webob.Response(status=301, location=PREFIX + "/")
            return self._static("index.html")
        if path.startswith(PREFIX + "/static/"):
            _only(method, "GET")
            return self._static(path[len(PREFIX + "/static/"):])
        if path == PREFIX + "/login":
            _only(method, "POST")
            return self._login(request)
        if path == PREFIX + "/logout":
            _only(method, "POST")
            response = json_response(200, {"logged_out": True})
            response.delete_cookie(COOKIE, path=PREFIX)
            return response
        _only(method, "GET")
        principal = self.sessions.principal(request.cookies.get(COOKIE), request.headers.get("Authorization"))
        if path == PREFIX + "/api/me":
            return json_response(200, {"name": principal.name, "role": principal.role.value,
                                       "homenet": principal.homenet})
        if path == PREFIX + "/api/homenets":
            return self._list(request, principal)
        if path.startswith(PREFIX + "/api/homenets/"):
            name = self._homenet(principal, path[len(PREFIX + "/api/homenets/"):])
            now = self.clock()
            return json_response(200, {**views.detail(self.core, name, now),
                                       "history": self.publisher.history(name)})
        if path == PREFIX + "/events":
            _only(method, "GET", head=False)  # a HEAD must not hold a stream open
            return self._events(request, principal)
        raise ApiError(404, f"no such dashboard path {path[:100]!r}")

    # --- pieces ---------------------------------------------------------------------------

    def _static(self, name: str) -> webob.Response:
        if name not in STATIC:
            raise ApiError(404, f"no such file {name[:60]!r}")
        response = webob.Response(body=static_file(name), content_type=STATIC[name], charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if name == "index.html":
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _login(self, request: webob.Request) -> webob.Response:
        body = read_json_object(request)
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ApiError(400, "expected {\"token\": \"<your REST token>\"}", "token")
        principal, cookie = self.sessions.login(token)
        response = json_response(200, {"name": principal.name, "role": principal.role.value,
                                       "homenet": principal.homenet})
        response.set_cookie(COOKIE, cookie, max_age=int(self.sessions.lifetime_s), path=PREFIX, httponly=True,
                            samesite="Strict", secure=request.scheme == "https")
        return response

    def _homenet(self, principal: Principal, name: str) -> str:
        """A homenet this principal may see: 404 if there is none such, 403 if not theirs."""
        if not NAME_RE.fullmatch(name):
            raise ApiError(404, f"no homenet named {name[:80]!r}")
        if principal.role is not Role.OPERATOR and principal.homenet != name:
            raise ApiError(403, f"{principal.name} may see homenet {principal.homenet!r} only")
        if name not in self.core.homenets:
            raise ApiError(404, f"no homenet named {name!r}")
        return name

    def _list(self, request: webob.Request, principal: Principal) -> webob.Response:
        params = request.GET
        only = None if principal.role is Role.OPERATOR else (principal.homenet or "")
        try:
            page = views.homenet_page(self.core, params.get("q", "")[:100], params.get("status", ""),
                                      _number(params.get("page"), 1, "page"),
                                      _number(params.get("per_page"), 50, "per_page"), only)
        except ValueError as err:
            raise ApiError(400, str(err), "status") from None
        return json_response(200, page)

    def _events(self, request: webob.Request, principal: Principal) -> webob.Response:
        params = request.GET
        names = [n for n in params.get("homenets", "").split(",") if n]
        if len(names) > MAX_WATCHED:
            raise ApiError(400, f"at most {MAX_WATCHED} homenets per stream", "homenets")
        detail = params.get("detail") or None
        summaries = [self._homenet(principal, n) for n in names]
        if detail is not None:
            detail = self._homenet(principal, detail)
        try:
            subscriber = self.feed.subscribe(summaries, detail)
        except FeedFull as err:
            raise ApiError(503, str(err), headers={"Retry-After": "10"}) from None
        # The state as of now goes first, on the same stream: nothing is missed in between.
        first = [views.summary(self.core, n) for n in summaries]
        now = self.clock()
        opening = {**views.detail(self.core, detail, now), "history": self.publisher.history(detail)} \
            if detail else None
        response = webob.Response(status=200, content_type="text/event-stream", charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        request.environ["eventlet.minimum_write_chunk_size"] = 0  # send each event as it comes
        response.app_iter = _Stream(self.feed, subscriber, first, opening)
        return response


class _Stream:
    """The body of an event stream. The subscription ends when the server closes the body
    (the browser went away), even if it never started iterating it."""

    def __init__(self, feed: EventFeed, subscriber: Subscriber, summaries: list[dict[str, Any]],
                 opening: dict[str, Any] | None) -> None:
        self.feed = feed
        self.subscriber = subscriber
        self.summaries = summaries
        self.opening = opening

    def __iter__(self) -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        for row in self.summaries:
            yield Event.of("summary", row["name"], row).text.encode()
        if self.opening is not None:
            yield Event.of("homenet", self.opening["name"], self.opening).text.encode()
        while not self.subscriber.closed:
            event = self.subscriber.next(KEEPALIVE_S)
            yield (event.text if event is not None else ": keep-alive\n\n").encode()

    def close(self) -> None:
        self.feed.unsubscribe(self.subscriber)


def _only(method: str, allowed: str, head: bool = True) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD" and head):
        raise ApiError(405, f"{method} is not allowed here; use {allowed}", headers={"Allow": allowed})


def _number(text: str | None, default: int, where: str) -> int:
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,6}", text):
        raise ApiError(400, f"{where} must be a positive whole number, not {text[:20]!r}", where)
    return int(text)


# --- Ryu --------------------------------------------------------------------------------------

@functools.cache
def _ryu_controller() -> type:
    from ryu.app.wsgi import ControllerBase, route

    class DashboardController(ControllerBase):
        @route("msp_dashboard", PREFIX + "{tail}", requirements={"tail": r"[\s\S]*"})
        def forward(self, req: webob.Request, **_urlvars: Any) -> webob.Response:
            dashboard: Dashboard = self.data["dashboard"]
            return dashboard.handle(req)

    return DashboardController


def mount(wsgi_app: Any, dashboard: Dashboard) -> None:
    """Serve the dashboard on Ryu's WSGIApplication (the RyuApp's "wsgi" context)."""
    from ryu.lib import hub

    dashboard.feed.queue_factory = hub.Queue  # a waiting stream yields to the event loop
    wsgi_app.register(_ryu_controller(), {"dashboard": dashboard})
