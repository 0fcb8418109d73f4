"""mspctl against a real HTTP server on 127.0.0.1 serving RestApi over the fake service."""
from __future__ import annotations

import io
import json
import pathlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from msp_controller.api.mspctl import main
from msp_controller.api.openapi import openapi_document
from msp_controller.api.rest import RestApi

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


def test_health(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, err = run(capsys, "--url", url, "health")
    assert code == 0 and not err
    assert json.loads(out) == service.health()
    assert out.startswith("{\n  ")  # pretty-printed


def test_raw_json(url: str, capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    code, out, _ = run(capsys, "--url", url, "--json", "homenets")
    assert code == 0 and "\n  " not in out and json.loads(out) == service.list_homenets()


def test_show(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", url + "/", "show", "home1")  # a trailing slash is fine
    assert code == 0 and json.loads(out)["paths"][0]["path"] == "ispA@edge1"


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
