"""mspctl against a real HTTP server on 127.0.0.1 serving RestApi over the fake service."""
from __future__ import annotations

import io
import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from msp_controller.api import ctl_watch
from msp_controller.api.auth import Authorizer, digest
from msp_controller.api.mspctl import main
from msp_controller.api.openapi import openapi_document
from msp_controller.api.rest import NotFound, RestApi
from msp_controller.api.service import CoreService
from msp_controller.model.access import ApiToken, Role
from msp_controller.model.config import MspConfig
from tests.harness import EDGE, EDGE2, EDGE2_UNDERLAY, EDGE_UNDERLAY, Harness

from .test_rest import FakeService

POLICY = {"classes": [{"name": "web", "match": {"protocol": "tcp", "dst_ports": [443]},
                       "egress": {"mode": "failover", "order": ["ispB", "ispA"]},
                       "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}}],
          "default": {"egress": {"mode": "balance", "weights": {"ispA": 1, "ispB": 1}},
                      "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}}}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(app: Callable[..., Any]) -> tuple[WSGIServer, threading.Thread]:
    httpd = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return httpd, thread


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def url(service: FakeService) -> Iterator[str]:
    httpd, thread = _serve(RestApi(service))
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_health_json(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, err = run(capsys, "--url", url, "--json", "health")
    assert code == 0 and not err
    assert json.loads(out) == service.health()


def test_health_table(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--url", url, "health")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0].startswith("status ok   uptime 12.5 s")
    assert lines[2].split() == ["SWITCH", "ROLE", "NAME", "CONNECTED", "RECONCILED"]
    assert lines[3].split()[0] == "00000000000000e1" and lines[3].split()[3] == "yes"


def test_raw_json(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, _ = run(capsys, "--url", url, "--json", "homenets")
    assert code == 0 and "\n  " not in out and json.loads(out) == service.list_homenets()


def test_show_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", url + "/", "--json", "show", "home1")  # a trailing slash is fine
    assert code == 0 and json.loads(out)["paths"][0]["path"] == "ispA@edge1"


def test_show_table(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", url, "show", "home1")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    # This fake server predates "state": the table says what it does know.
    assert rows["ispA@edge1"][:2] == ["ispA@edge1", "live"] and "12.0" in rows["ispA@edge1"]
    assert rows["ispB@edge1"][1:3] == ["not", "live"]
    assert rows["voip"][:2] == ["voip", "ispA@edge1"]


def test_list_table(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, _ = run(capsys, "--url", url, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[0] == "HOMENET" and len(lines) == 1 + len(service.policies)
    assert lines[1].split()[:2] == ["home1", "ispA@edge1"]


def test_policy_get(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, _ = run(capsys, "--url", url, "policy", "get", "home.2_x-y")
    assert code == 0 and json.loads(out) == service.policies["home.2_x-y"]


def test_policy_set_from_file(url: str, capsys: pytest.CaptureFixture[str], service: FakeService,
                              tmp_path: pathlib.Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    code, out, err = run(capsys, "--url", url, "policy", "set", "home1", str(path))
    assert code == 0 and not err
    assert json.loads(out)["applied"] is True and service.policies["home1"] == POLICY


def test_policy_set_from_stdin(url: str, capsys: pytest.CaptureFixture[str], service: FakeService,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(POLICY).encode())))
    code, _, _ = run(capsys, "--url", url, "policy", "set", "home1", "-")
    assert code == 0 and service.policies["home1"] == POLICY


def test_policy_set_pending_warns(url: str, capsys: pytest.CaptureFixture[str], service: FakeService,
                                  tmp_path: pathlib.Path) -> None:
    service.connected = False
    (tmp_path / "p.json").write_text(json.dumps(POLICY))
    code, out, err = run(capsys, "--url", url, "policy", "set", "home1", str(tmp_path / "p.json"))
    assert code == 0 and json.loads(out)["applied"] is False
    assert "00000000000000e1" in err and "when these switches connect" in err


def test_homenet_create_and_delete(url: str, capsys: pytest.CaptureFixture[str], service: FakeService,
                                   tmp_path: pathlib.Path) -> None:
    spec = tmp_path / "home3.json"
    spec.write_text(json.dumps({"name": "home3"}))
    assert main(["--url", url, "homenet", "create", str(spec)]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] is True and "home3" in service.policies
    assert main(["--url", url, "homenet", "create", str(spec)]) == 1
    assert "400: homenet.name: a homenet named 'home3' exists" in capsys.readouterr().err
    assert main(["--url", url, "homenet", "delete", "home3"]) == 0
    assert "home3" not in service.policies


def test_openapi(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", url, "openapi")
    assert code == 0 and json.loads(out) == openapi_document()


# --- failures -----------------------------------------------------------------------------------

def test_unknown_homenet_prints_the_api_message(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--url", url, "show", "nohome")
    assert code == 1 and not out
    assert err == "mspctl: 404: no homenet named 'nohome'\n"


def test_names_are_quoted_into_the_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", url, "policy", "get", "a/b c?")
    assert code == 1 and "404" in err and "a/b c?" in err


def test_rejected_policy_prints_where(url: str, capsys: pytest.CaptureFixture[str], service: FakeService,
                                      tmp_path: pathlib.Path) -> None:
    before = dict(service.policies["home1"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"classes": [{"name": "x", "egress": {"order": ["ispA", "ispC"]}}]}))
    code, out, err = run(capsys, "--url", url, "policy", "set", "home1", str(path))
    assert code == 1 and not out
    assert err == "mspctl: 400: classes[0].egress.order[1]: unknown ISP 'ispC'\n"
    assert service.policies["home1"] == before


def test_policy_file_that_is_not_json(url: str, capsys: pytest.CaptureFixture[str],
                                      tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "classes": [\n}\n')
    code, _, err = run(capsys, "--url", url, "policy", "set", "home1", str(path))
    assert code == 1 and "not JSON" in err and "line 3 column 1" in err


def test_missing_policy_file(url: str, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    code, _, err = run(capsys, "--url", url, "policy", "set", "home1", str(tmp_path / "nope.json"))
    assert code == 1 and "cannot read" in err and "nope.json" in err


def test_server_bug_is_exit_1(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    service.fail = RuntimeError("boom")
    code, _, err = run(capsys, "--url", url, "health")
    assert code == 1 and err.startswith("mspctl: 500: internal error")


def test_connection_refused_is_exit_2_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    code, out, err = run(capsys, "--url", url, "health")
    assert code == 2 and not out
    assert url in err and "connection refused" in err


def test_not_the_msp_api(capsys: pytest.CaptureFixture[str]) -> None:
    def elsewhere(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<html>nope</html>"]

    httpd, thread = _serve(elsewhere)
    try:
        code, _, err = run(capsys, "--url", f"http://127.0.0.1:{httpd.server_port}", "health")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert code == 1 and "not an answer from the msp API" in err


@pytest.mark.parametrize("argv,code", [([], 2), (["show"], 2), (["policy", "set", "home1"], 2),
                                       (["frobnicate"], 2), (["--help"], 0)])
def test_usage(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> None:
    assert main(argv) == code
    capsys.readouterr()


def test_bad_url_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", "127.0.0.1:8080", "health")
    assert code == 2 and "127.0.0.1:8080" in err


# --- tables and watch against the real core ---------------------------------------------------

@pytest.fixture
def edges_only(config: MspConfig) -> Iterator[str]:
    """A real core whose edges are connected but not home1's box: its paths are not known live."""
    harness = Harness(config)
    for dpid in (EDGE, EDGE_UNDERLAY, EDGE2, EDGE2_UNDERLAY):
        harness.connect(dpid)
    httpd, thread = _serve(RestApi(CoreService(harness.core, lambda effects: [], clock=lambda: harness.now)))
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_tables_say_unknown_for_a_box_not_connected(edges_only: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", edges_only, "show", "home1")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert code == 0
    for path in ("ispA@edge1", "ispB@edge1", "ispA@edge2", "ispB@edge2"):
        assert rows[path][1:4] == ["unknown", "unknown", "up"]  # state, MSPMB end, edge end
    assert rows["default"][1:3] == ["ispA@edge1", "(unknown)"]
    code, out, _ = run(capsys, "--url", edges_only, "list")
    assert code == 0 and out.splitlines()[1].split() == ["home1", "ispA@edge1", "(unknown)", "ispA@edge1",
                                                         "(unknown)", "4", "unknown"]
    code, out, _ = run(capsys, "--url", edges_only, "health")
    assert code == 0 and "paths  4 unknown" in out.splitlines()


class ChangingService(FakeService):
    """home1 as a sequence of answers, one per GET, the last repeated; None: it is gone."""

    def __init__(self, answers: list[dict[str, Any] | None]) -> None:
        super().__init__()
        self.answers = answers
        self.calls = 0

    def get_homenet(self, name: str) -> dict[str, Any]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if answer is None:
            raise NotFound(f"no homenet named {name!r}")
        return answer


def _homenet(a_state: str, egress: str) -> dict[str, Any]:
    return {"name": "home1",
            "paths": [{"path": "ispA@edge1", "state": a_state, "live": a_state == "up"},
                      {"path": "ispB@edge1", "state": "up", "live": True}],
            "classes": [{"name": "default", "egress": egress, "egress_state": "up",
                         "ingress": "ispA@edge1", "ingress_state": "unknown"}]}


def _lines(out: str) -> list[str]:
    """Output lines without their time stamps."""
    return [line.split(" ", 1)[1] for line in out.splitlines()]


def test_watch_prints_one_line_per_change(capsys: pytest.CaptureFixture[str]) -> None:
    up, failed = _homenet("up", "ispA@edge1"), _homenet("down", "ispB@edge1")
    service = ChangingService([up, up, failed, failed, None, None, failed])
    httpd, thread = _serve(RestApi(service))
    try:
        code, out, err = run(capsys, "--url", f"http://127.0.0.1:{httpd.server_port}", "watch", "home1",
                             "--interval", "0.1", "--for", "1.2")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert code == 0 and "watching homenet home1" in err and service.calls >= len(service.answers)
    assert _lines(out) == ["home1 path ispA@edge1: up -> down",
                           "home1 default egress: ispA@edge1 (up) -> ispB@edge1 (up)",
                           "404: no homenet named 'home1'",
                           "answering again"]


def test_watch_keeps_watching_an_unreachable_controller(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, _ = run(capsys, "--url", f"http://127.0.0.1:{port}", "watch", "--interval", "0.1", "--for", "0.4")
    assert code == 0 and len(out.splitlines()) == 1 and "connection refused" in out  # said once


def test_watch_stops_on_a_refusal_waiting_cannot_cure(service: FakeService,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    guarded = RestApi(service, Authorizer([ApiToken("ops", Role.OPERATOR, digest("secret"))]))
    httpd, thread = _serve(guarded)
    try:
        started = time.monotonic()
        code, _, err = run(capsys, "--url", f"http://127.0.0.1:{httpd.server_port}", "watch", "--for", "30")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert code == 1 and "401" in err and time.monotonic() - started < 10


@pytest.mark.parametrize("argv", [["watch", "--interval", "0.01"], ["watch", "--for", "-1"],
                                  ["watch", "--interval", "soon"]])
def test_watch_usage(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    assert "watch" in capsys.readouterr().err


def test_watch_loop_with_a_fake_clock() -> None:
    snapshots = [{("h", "path a"): "up"}, {("h", "path a"): "up"},
                 {("h", "path a"): "down", ("h", "path b"): "up"}, {("h", "path b"): "up"}]
    clock = [0.0]
    out = io.StringIO()

    def fetch() -> ctl_watch.Snapshot:
        return snapshots[min(int(clock[0]), len(snapshots) - 1)]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    ctl_watch.watch(fetch, out, 1.0, 5.0, clock=lambda: clock[0], sleep=sleep, stamp=lambda: "T")
    assert out.getvalue().splitlines() == ["T h path a: up -> down", "T h path b: absent -> up",
                                           "T h path a: down -> gone"]
    assert clock[0] == 5.0  # stopped at the deadline


def test_list_snapshot_follows_every_homenets_default_class() -> None:
    snapshot = ctl_watch.list_snapshot([{"name": "h", "active_egress": None, "active_ingress": "ispA@edge1",
                                         "active_ingress_state": "unknown", "path_states": {"ispA@edge1": "unknown"}}])
    assert snapshot == {("h", "path ispA@edge1"): "unknown", ("h", "default egress"): "no path",
                        ("h", "default ingress"): "ispA@edge1 (unknown)"}


def test_rates_changes_one_isps_rates_in_the_policy(url: str, capsys: pytest.CaptureFixture[str],
                                                    service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit import test_rest
    monkeypatch.setattr(test_rest, "POLICY_KEYS", test_rest.POLICY_KEYS | {"rates"})  # the fake's key check
    service.policies["home1"] = dict(POLICY, rates={"ispB": {"down_kbps": 50000, "up_kbps": 10000}})
    code, out, err = run(capsys, "--url", url, "rates", "home1", "ispA", "--down-kbps", "100000",
                         "--up-kbps", "20000")
    assert code == 0 and not err and json.loads(out)["applied"] is True
    assert service.policies["home1"]["rates"] == {"ispA": {"down_kbps": 100000, "up_kbps": 20000},
                                                  "ispB": {"down_kbps": 50000, "up_kbps": 10000}}
    # One direction only: the other stays; none stops shaping it.
    code, _, _ = run(capsys, "--url", url, "rates", "home1", "ispB", "--up-kbps", "none")
    assert code == 0 and service.policies["home1"]["rates"]["ispB"] == {"down_kbps": 50000, "up_kbps": None}
    assert service.policies["home1"]["classes"] == POLICY["classes"]


def test_rates_refuses_a_bad_rate_before_asking(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", url, "rates", "home1", "ispA", "--down-kbps", "fast")
    assert code == 2 and "not a rate" in err
