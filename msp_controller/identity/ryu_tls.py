"""A TLS listener for Ryu 4.34's OpenFlow server that survives its second connection.

Ryu 4.34's hub.StreamServer pops the SSL context, key, certificate and CA out of its shared
arguments while wrapping the *first* connection, so every later switch fails with "certfile
must be specified for server-side operations" (measured here: the second bridge never got in).
install() swaps the StreamServer that ryu.controller.controller uses for one that builds its
context once (TLS 1.2 or later, client certificate required), logs a failed handshake in one
line, and ends quietly a connection the controller closed on purpose. Call it before Ryu
starts its OpenFlow server (an app's __init__ is early enough).
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from ryu.controller import controller
from ryu.lib import hub

LOG = logging.getLogger("msp.tls")


def server_context(certfile: str, keyfile: str, ca_certs: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(ca_certs)
    return context


class TlsStreamServer(hub.StreamServer):  # type: ignore[misc]
    """hub.StreamServer with one SSL context for every connection."""

    def __init__(self, listen_info: Any, handle: Callable[[Any, Any], None] | None = None,
                 **ssl_args: Any) -> None:
        certfile, keyfile, ca_certs = ssl_args.get("certfile"), ssl_args.get("keyfile"), ssl_args.get("ca_certs")
        super().__init__(listen_info, handle)  # plain: we wrap ourselves
        if not (certfile and keyfile and ca_certs):
            if ssl_args:
                raise ValueError("OpenFlow over TLS needs --ctl-privkey, --ctl-cert and --ca-certs")
            return
        context = server_context(certfile, keyfile, ca_certs)
        assert handle is not None

        def handshake_then_handle(sock: Any, addr: Any) -> None:
            try:
                wrapped = context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as err:
                LOG.warning("msp: TLS handshake with %s failed: %s", addr[0], err)
                sock.close()
                return
            try:
                handle(wrapped, addr)
            except ValueError as err:
                # Datapath.close() shuts the socket down for writing, which unwraps an SSL
                # socket under the read loop: the connection was closed on purpose.
                if "closed or unwrapped" not in str(err):
                    raise

        self.handle = handshake_then_handle


def install() -> None:
    controller.StreamServer = TlsStreamServer  # type: ignore[attr-defined]
