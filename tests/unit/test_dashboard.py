"""The live dashboard without a browser: its change feed, what it publishes when the core
changes, and who may see what (no login: 401; another owner's homenet: 403)."""
from __future__ import annotations

import json
from typing import Any

import pytest
import webob

from msp_controller.api.auth import Authorizer, digest
from msp_controller.dashboard import views
from msp_controller.dashboard.feed import MAX_WATCHED, EventFeed
from msp_controller.dashboard.live import DashboardPublisher
from msp_controller.dashboard.session import COOKIE, Sessions
from msp_controller.dashboard.web import Dashboard
from msp_controller.model.access import ApiToken, Role
from tests.harness import HOME, Harness

OPERATOR, OWNER, STRANGER = "op-secret", "home1-secret", "home2-secret"
TOKENS = (ApiToken("operator", Role.OPERATOR, digest(OPERATOR)),
          ApiToken("home1-owner", Role.OWNER, digest(OWNER), "home1"),
          ApiToken("home2-owner", Role.OWNER, digest(STRANGER), "home2"))


def events(feed_text: list[str]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for text in feed_text:
        lines = dict(line.split(": ", 1) for line in text.strip().splitlines() if not line.startswith(":"))
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


# --- the feed ------------------------------------------------------------------------------

def test_an_event_reaches_only_the_subscribers_of_its_homenet() -> None:
    feed = EventFeed()
    list_page = feed.subscribe(summaries=["home1", "home2"])
    other = feed.subscribe(summaries=["home3"])
    detail = feed.subscribe(detail="home1")
    assert feed.publish("summary", "home1", {"name": "home1"}) == 1
    assert feed.publish("homenet", "home1", {"name": "home1"}) == 1
    assert feed.publish("summary", "home9", {}) == 0  # nobody watches it: nothing is built
    assert [e.kind for e in _drain(list_page)] == ["summary"]
    assert [e.kind for e in _drain(detail)] == ["homenet"]
    assert _drain(other) == []
    feed.unsubscribe(list_page)
    assert feed.publish("summary", "home2", {}) == 0
    assert not feed.watched("home2") and feed.watched("home1")


def test_a_subscriber_that_falls_behind_gets_one_resync_not_unbounded_memory() -> None:
    feed = EventFeed()
    slow = feed.subscribe(summaries=["home1"])
    for i in range(1000):
        feed.publish("summary", "home1", {"n": i})
    queued = _drain(slow)
    assert len(queued) <= 256
    assert "resync" in [e.kind for e in queued]
    assert slow.resyncs >= 1


def test_a_stream_watches_a_page_of_homenets_not_the_whole_msp() -> None:
    with pytest.raises(ValueError, match=str(MAX_WATCHED)):
        EventFeed().subscribe(summaries=[f"h{i}" for i in range(MAX_WATCHED + 1)])


def test_the_number_of_open_streams_is_bounded(harness: Harness) -> None:
    feed = EventFeed(max_streams=2)
    dashboard = Dashboard(harness.core, Sessions(Authorizer(TOKENS)), feed,
                          DashboardPublisher(harness.core, feed), lambda: harness.now)
    open_ = [call(dashboard, "/dashboard/events?detail=home1", token=OPERATOR) for _ in range(2)]
    refused = call(dashboard, "/dashboard/events?detail=home1", token=OPERATOR)
    assert refused.status_int == 503 and refused.headers["Retry-After"] == "10"
    for response in open_:
        iter(response.app_iter)
        response.app_iter.close()
    assert feed.subscribers == 0
    assert call(dashboard, "/dashboard/events?detail=home1", token=OPERATOR).status_int == 200
    assert call(dashboard, "/dashboard/events?detail=home1", "HEAD", token=OPERATOR).status_int == 405


def _drain(subscriber: Any) -> list[Any]:
    found = []
    while (event := subscriber.next(0.0)) is not None:
        found.append(event)
    return found


# --- from the core to the feed ----------------------------------------------------------------

@pytest.fixture
def harness(config) -> Harness:
    harness = Harness(config)
    harness.connect_all()
    return harness


def test_an_isp_failure_is_published_to_the_homenets_page_at_once(harness: Harness) -> None:
    feed = EventFeed()
    publisher = DashboardPublisher(harness.core, feed, clock=lambda: harness.now)
    page = feed.subscribe(summaries=["home1"], detail="home1")
    assert views.summary(harness.core, "home1")["egress"] == "ispA@edge1"
    effects = harness.set_live(HOME, "edge1-ispA", False)  # the MSPMB's BFD on ISP A says down
    assert "home1" in effects.touched
    publisher.touched(effects.touched)
    published = {e.kind: json.loads(e.text.split("data: ", 1)[1]) for e in _drain(page)}
    assert published["summary"]["egress"] == "ispB@edge1"
    default = next(c for c in published["homenet"]["classes"] if c["name"] == "default")
    assert default["egress"] == "ispB@edge1" and default["ingress"] == "ispB@edge1"
    assert published["homenet"]["changes"][0]["new"] == "ispB@edge1"
    publisher.touched(effects.touched)  # nothing changed since: nothing sent again
    assert _drain(page) == []


def test_touched_homenets_nobody_watches_cost_nothing(harness: Harness) -> None:
    feed = EventFeed()
    publisher = DashboardPublisher(harness.core, feed)
    publisher._publish_if_changed = None  # type: ignore[assignment, method-assign]  # would raise if called
    publisher.touched(["home1"])


def test_statistics_are_sampled_only_for_homenets_shown_in_full(harness: Harness) -> None:
    feed = EventFeed()
    publisher = DashboardPublisher(harness.core, feed, clock=lambda: harness.now)
    listing = feed.subscribe(summaries=["home1"])
    publisher.tick()
    assert _drain(listing) == [] and publisher.history("home1") == []
    detail = feed.subscribe(detail="home1")
    publisher.tick()
    (sample,) = _drain(detail)
    assert sample.kind == "stats" and "ispA@edge1" in json.loads(sample.text.split("data: ", 1)[1])["paths"]
    feed.unsubscribe(detail)
    publisher.tick()
    assert publisher.history("home1") == []  # nobody looks: nothing kept


# --- HTTP: who may see what --------------------------------------------------------------------

@pytest.fixture
def dashboard(harness: Harness) -> Dashboard:
    feed = EventFeed()
    return Dashboard(harness.core, Sessions(Authorizer(TOKENS)), feed,
                     DashboardPublisher(harness.core, feed, clock=lambda: harness.now), lambda: harness.now)


def call(dashboard: Dashboard, path: str, method: str = "GET", token: str | None = None,
         cookie: str | None = None, body: Any = None) -> webob.Response:
    request = webob.Request.blank(path, method=method)
    if token:
        request.headers["Authorization"] = f"Bearer {token}"
    if cookie:
        request.headers["Cookie"] = f"{COOKIE}={cookie}"
    if body is not None:
        request.body = json.dumps(body).encode()
        request.content_type = "application/json"
    return dashboard.handle(request)


PROTECTED = ["/dashboard/api/me", "/dashboard/api/homenets", "/dashboard/api/homenets/home1",
             "/dashboard/events?detail=home1", "/dashboard/events?homenets=home1"]


@pytest.mark.parametrize("path", PROTECTED)
def test_without_a_token_or_session_every_endpoint_answers_401(dashboard: Dashboard, path: str) -> None:
    response = call(dashboard, path)
    assert response.status_int == 401
    assert "log in" in response.json["error"]["message"]


@pytest.mark.parametrize("path", PROTECTED[2:])
def test_the_owner_of_another_homenet_gets_403(dashboard: Dashboard, path: str) -> None:
    assert call(dashboard, path, token=STRANGER).status_int == 403
    assert call(dashboard, path, token=OWNER).status_int == 200


def test_an_owner_lists_only_their_own_homenet(dashboard: Dashboard) -> None:
    assert call(dashboard, "/dashboard/api/homenets", token=STRANGER).json["homenets"] == []
    assert [h["name"] for h in call(dashboard, "/dashboard/api/homenets", token=OWNER).json["homenets"]] == ["home1"]


def test_login_sets_an_httponly_strict_cookie_that_then_authenticates(dashboard: Dashboard) -> None:
    assert call(dashboard, "/dashboard/login", "POST", body={"token": "wrong"}).status_int == 401
    response = call(dashboard, "/dashboard/login", "POST", body={"token": OPERATOR})
    assert response.status_int == 200 and response.json["role"] == "operator"
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/dashboard" in header
    assert OPERATOR not in header
    cookie = header.split(";")[0].split("=", 1)[1]
    assert call(dashboard, "/dashboard/api/me", cookie=cookie).json["name"] == "operator"
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert call(dashboard, "/dashboard/api/me", cookie=forged).status_int == 401


def test_an_expired_session_is_refused() -> None:
    now = [1000.0]
    sessions = Sessions(Authorizer(TOKENS), lifetime_s=60, clock=lambda: now[0])
    _, cookie = sessions.login(OWNER)
    assert sessions.principal(cookie, None).homenet == "home1"
    now[0] += 61
    with pytest.raises(Exception, match="expired"):
        sessions.principal(cookie, None)


def test_the_page_and_its_files_are_served_without_login_and_load_nothing_from_elsewhere(
        dashboard: Dashboard) -> None:
    page = call(dashboard, "/dashboard/")
    assert page.status_int == 200 and page.content_type == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http" not in page.text.replace('xmlns="http', "")  # no CDN, no external file
    for name in ("dashboard.js", "dashboard.css"):
        assert call(dashboard, f"/dashboard/static/{name}").status_int == 200
    assert call(dashboard, "/dashboard/static/../web.py").status_int == 404


def test_the_event_stream_starts_with_the_state_now_then_carries_changes(
        dashboard: Dashboard, harness: Harness) -> None:
    response = call(dashboard, "/dashboard/events?homenets=home1&detail=home1", token=OWNER)
    assert response.content_type == "text/event-stream"
    stream = iter(response.app_iter)
    opening = events([next(stream).decode() for _ in range(3)])
    assert [kind for kind, _ in opening] == ["summary", "homenet"]
    assert opening[1][1]["classes"][0]["egress"] == "ispA@edge1"
    effects = harness.set_live(HOME, "edge1-ispA", False)
    dashboard.publisher.touched(effects.touched)
    changed = events([next(stream).decode(), next(stream).decode()])
    assert {kind for kind, _ in changed} == {"summary", "homenet"}
    assert all(data.get("egress", "") == "ispB@edge1" or data.get("classes", [{}])[0]["egress"] == "ispB@edge1"
               for _, data in changed)
    response.app_iter.close()  # the browser went away: the subscription goes with it
    assert dashboard.feed.subscribers == 0


def test_the_list_filters_and_pages_on_the_server(dashboard: Dashboard) -> None:
    found = call(dashboard, "/dashboard/api/homenets?q=HOME&per_page=1", token=OPERATOR).json
    assert found["total"] == 1 and found["pages"] == 1 and found["homenets"][0]["name"] == "home1"
    assert call(dashboard, "/dashboard/api/homenets?q=nothing", token=OPERATOR).json["total"] == 0
    assert call(dashboard, "/dashboard/api/homenets?status=ok", token=OPERATOR).json["total"] == 1
    assert call(dashboard, "/dashboard/api/homenets?status=down", token=OPERATOR).json["total"] == 0
    bad = call(dashboard, "/dashboard/api/homenets?status=sideways", token=OPERATOR)
    assert bad.status_int == 400 and "status must be one of" in bad.json["error"]["message"]
    assert call(dashboard, "/dashboard/api/homenets?page=x", token=OPERATOR).status_int == 400


def test_thousands_of_homenets_reach_the_browser_a_page_at_a_time() -> None:
    from bench.scale_configs import config_dict
    from msp_controller.core.msp import MspCore
    from msp_controller.model.config import parse_config

    core = MspCore(parse_config(config_dict(1200)))
    first = views.homenet_page(core, per_page=50)
    assert first["total"] == 1200 and first["pages"] == 24 and len(first["homenets"]) == 50
    assert set(first["homenets"][0]) == {"name", "status", "egress", "ingress", "paths_up", "paths"}
    last = views.homenet_page(core, page=99, per_page=50)  # past the end: the last page
    assert last["page"] == 24 and len(last["homenets"]) == 50
    names = [h["name"] for h in views.homenet_page(core, query="1", per_page=200)["homenets"]]
    assert len(names) == 200 and all("1" in name for name in names) and names == sorted(names)
    # No box connected: the edges are not there, so no homenet is served (down), none ok.
    assert first["counts"]["down"] == 1200 and first["counts"]["ok"] == 0


def test_with_no_tokens_configured_there_is_no_login(harness: Harness) -> None:
    feed = EventFeed()
    dashboard = Dashboard(harness.core, Sessions(Authorizer(())), feed, DashboardPublisher(harness.core, feed),
                          lambda: harness.now)
    assert call(dashboard, "/dashboard/api/me").json["role"] == "operator"  # loopback only (app.py)
    assert call(dashboard, "/dashboard/api/homenets/home1").status_int == 200
