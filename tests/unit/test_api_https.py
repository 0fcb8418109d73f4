"""The REST API over HTTPS: [api] tls_cert and tls_key, and Ryu's WSGI service made to
speak TLS (msp_controller/api/https.py), exercised with a real TLS client on loopback."""
from __future__ import annotations

import http.client
import json
import pathlib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest

from msp_controller.api.openapi import API_PREFIX
from msp_controller.model.config import parse_config
from msp_controller.model.errors import FieldError

ROOT = pathlib.Path(__file__).resolve().parents[2]

HTTPS_SERVER = """
import sys
from ryu.lib import hub
hub.patch(thread=False)  # as ryu-manager does
from ryu import cfg
from ryu.app import wsgi
from msp_controller.api import https
from msp_controller.api.rest import mount
from msp_controller.model.config import ApiTls
from tests.unit.test_rest import FakeService
cfg.CONF([], project="ryu")
cfg.CONF.set_override("wsapi_host", "127.0.0.1")
cfg.CONF.set_override("wsapi_port", 0)
https.install(ApiTls(cert=sys.argv[1], key=sys.argv[2]))
app = wsgi.WSGIApplication()
mount(app, FakeService())
server = wsgi.start_service(type("Manager", (), {"contexts": {"wsgi": app}})())
print(server.server.getsockname()[1], flush=True)
server()
"""


@pytest.fixture
def certificate(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_port(certificate: tuple[pathlib.Path, pathlib.Path]) -> Iterator[int]:
    """ryu.app.wsgi's own service, made HTTPS by https.install, in a child process."""
    cert, key = certificate
    child = subprocess.Popen([sys.executable, "-c", HTTPS_SERVER, str(cert), str(key)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        assert port.isdigit(), f"the HTTPS server did not start: {child.stderr.read() if child.stderr else ''}"
        yield int(port)
    finally:
        child.terminate()
        child.wait(timeout=10)


def _client(cert: pathlib.Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_the_api_answers_over_tls_with_its_certificate(https_port: int, certificate: tuple) -> None:
    connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=_client(certificate[0]))
    connection.request("GET", f"{API_PREFIX}/health")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    assert connection.sock.version() in ("TLSv1.2", "TLSv1.3")
    connection.close()


def test_plain_http_gets_no_api(https_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", https_port, timeout=10)
    with pytest.raises((http.client.HTTPException, OSError)):
        connection.request("GET", f"{API_PREFIX}/health")
        connection.getresponse()
    connection.close()


def test_old_tls_is_refused(https_port: int, certificate: tuple) -> None:
    context = _client(certificate[0])
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw:
            context.wrap_socket(raw, server_hostname="127.0.0.1").close()


def test_a_stalled_handshake_does_not_hold_up_other_clients(https_port: int, certificate: tuple) -> None:
    """The handshake happens in each connection's own green thread, not in the accept loop."""
    with socket.create_connection(("127.0.0.1", https_port), timeout=10):  # connects, says nothing
        connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=5,
                                                 context=_client(certificate[0]))
        connection.request("GET", f"{API_PREFIX}/health")
        assert connection.getresponse().status == 200
        connection.close()


def test_tls_settings_come_in_pairs_of_readable_files(reference_data: dict,
                                                      certificate: tuple[pathlib.Path, pathlib.Path]) -> None:
    cert, key = certificate
    data = {**reference_data, "api": {**reference_data.get("api", {}), "tls_cert": str(cert), "tls_key": str(key)}}
    tls = parse_config(data).api_tls
    assert tls is not None and (tls.cert, tls.key) == (str(cert), str(key))
    only_cert = {**data, "api": {k: v for k, v in data["api"].items() if k != "tls_key"}}
    with pytest.raises(FieldError, match="api.tls_key: is required with tls_cert"):
        parse_config(only_cert)
    missing = {**data, "api": {**data["api"], "tls_key": str(key) + ".nonesuch"}}
    with pytest.raises(FieldError, match="api.tls_key: .* is not a readable file"):
        parse_config(missing)
    assert parse_config(reference_data).api_tls is None


def test_mspctl_checks_the_certificate_against_msp_cacert(https_port: int, certificate: tuple,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from msp_controller.api import mspctl

    url = f"https://127.0.0.1:{https_port}"
    monkeypatch.delenv("MSP_CACERT", raising=False)
    assert mspctl.main(["--url", url, "--json", "health"]) == 2  # not signed by a system CA
    assert "certificate verify failed" in capsys.readouterr().err.lower()
    monkeypatch.setenv("MSP_CACERT", str(certificate[0]))
    assert mspctl.main(["--url", url, "--json", "health"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
