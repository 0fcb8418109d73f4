"""The REST API over HTTPS, in the controller itself.

Ryu 4.34's WSGI server (ryu.app.wsgi.WSGIServer, started by ryu-manager) speaks plain HTTP
only. `install(tls)` replaces it, before ryu-manager starts it, with one whose listening
socket is wrapped in TLS (1.2 or later). The handshake is left to each connection's own
green thread (not the accept loop), so a client that stalls in the handshake does not hold
up the others.
"""
from __future__ import annotations

import ssl
from typing import Any

from msp_controller.model.config import ApiTls


def server_context(tls: ApiTls, context_class: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """The API's TLS settings; raises ssl.SSLError / OSError for a bad certificate or key."""
    context = context_class(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context


def https_server_class(tls: ApiTls) -> type:
    """What ryu.app.wsgi.WSGIServer is (ryu.lib.hub's server on --wsapi-host/--wsapi-port,
    started by calling it), serving HTTPS with tls's certificate and key. Not a subclass:
    Ryu's class names itself through the module global that install() replaces."""
    from eventlet.green import ssl as green_ssl
    from ryu import cfg
    from ryu.lib import hub

    context = server_context(tls, green_ssl.GreenSSLContext)  # fail at start-up, not at a request

    class HttpsServer(hub.WSGIServer):  # type: ignore[misc, name-defined]
        def __init__(self, application: Any, **config: Any) -> None:
            super().__init__((cfg.CONF.wsapi_host, cfg.CONF.wsapi_port), application, **config)
            # Accepted sockets do their handshake on first read, in their own green thread.
            listening: Any = self.server  # type: ignore[has-type]  # set by hub.StreamServer
            self.server = context.wrap_socket(listening, server_side=True, do_handshake_on_connect=False)

        def __call__(self) -> None:
            self.serve_forever()

    return HttpsServer


def install(tls: ApiTls) -> None:
    """Make ryu-manager's WSGI service speak HTTPS (call before ryu-manager starts it)."""
    from ryu.app import wsgi

    wsgi.WSGIServer = https_server_class(tls)
