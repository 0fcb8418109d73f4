"""The dashboard's event stream on Ryu's own WSGI service made HTTPS (api/https.py), with a real
TLS client on loopback: each event arrives as it is published (eventlet would otherwise hold
small writes back until 4 KB had gathered), and the session cookie is Secure over HTTPS."""
from __future__ import annotations

import http.client
import json
import pathlib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.unit.test_api_https import certificate  # noqa: F401  # the fixture

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR_TOKEN = (ROOT / "etc" / "reference-operator.token").read_text().strip()

SERVER = """
import sys, time
from ryu.lib import hub
hub.patch(thread=False)  # as ryu-manager does
from ryu import cfg
from ryu.app import wsgi
from msp_controller.api import https
from msp_controller.api.auth import Authorizer
from msp_controller.core.msp import MspCore
from msp_controller.dashboard import web
from msp_controller.model.config import ApiTls, load_config
cfg.CONF([], project="ryu")
cfg.CONF.set_override("wsapi_host", "127.0.0.1")
cfg.CONF.set_override("wsapi_port", 0)
https.install(ApiTls(cert=sys.argv[1], key=sys.argv[2]))
config = load_config("etc/reference.toml")
dashboard = web.Dashboard.create(MspCore(config), Authorizer(config.api_tokens))
app = wsgi.WSGIApplication()
web.mount(app, dashboard)

def publish():  # a small event every 0.2 s, stamped with when it was published
    while True:
        hub.sleep(0.2)
        dashboard.feed.publish("summary", "home1", {"name": "home1", "sent": time.monotonic()})

hub.spawn(publish)
server = wsgi.start_service(type("Manager", (), {"contexts": {"wsgi": app}})())
print(server.server.getsockname()[1], flush=True)
server()
"""


@pytest.fixture
def port(certificate: tuple[pathlib.Path, pathlib.Path]) -> Iterator[int]:  # noqa: F811
    cert, key = certificate
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(cert), str(key)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        found = child.stdout.readline().strip()
        assert found.isdigit(), f"the server did not start: {child.stderr.read() if child.stderr else ''}"
        yield int(found)
    finally:
        child.terminate()
        child.wait(timeout=10)


def _connect(port: int, cert: pathlib.Path) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=ssl.create_default_context(cafile=str(cert)))


def test_events_arrive_one_by_one_over_https(port: int, certificate: tuple) -> None:  # noqa: F811
    connection = _connect(port, certificate[0])
    connection.request("GET", "/dashboard/events?homenets=home1",
                       headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
    delays = []
    kind = ""
    while len(delays) < 4:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "summary":
            data = json.loads(line[6:])
            if "sent" in data:  # not the opening state
                delays.append(time.monotonic() - data["sent"])
    connection.close()
    assert max(delays) < 0.15, f"events held back: {delays}"


def test_the_session_cookie_is_secure_over_https(port: int, certificate: tuple) -> None:  # noqa: F811
    connection = _connect(port, certificate[0])
    connection.request("POST", "/dashboard/login", body=json.dumps({"token": OPERATOR_TOKEN}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    cookie = response.getheader("Set-Cookie", "")
    assert "secure" in cookie.lower() and "httponly" in cookie.lower()
    connection.close()
