"""One box's OVSDB connection (RFC 7047 JSON-RPC over an accepted TLS socket).

Why not Ryu's ryu.services.protocols.ovsdb or the `ovs` library's IDL: Ryu's manager names a
box by the system-id the box itself claims and never shows the app the peer's certificate,
so a box could speak for another; the IDL opens its connection from a remote string, and a
passive one (pssl:) holds one client at a time, a new one replacing the last. Thousands of
boxes dial one manager port, each bound to the datapath id of its certificate: a small
JSON-RPC client over the socket we accepted does exactly that, in about a hundred lines.

The reader thread applies monitor updates to a Replica and calls on_change(session); it
answers the server's echo requests (OVSDB's inactivity probe).
"""
from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from msp_controller.box.ovsdb_ops import DB, Json, Replica, monitor_request

LOG = logging.getLogger("msp.box.ovsdb")
MONITOR_ID = "msp"


class OvsdbSession:
    def __init__(self, sock: socket.socket, owner: str, peer: str,
                 on_change: Callable[[OvsdbSession], None],
                 on_close: Callable[[OvsdbSession], None]) -> None:
        self.sock = sock
        self.owner = owner  # "homenet:<name>" or "edge:<name>"
        self.peer = peer
        self.replica = Replica()
        self.lock = threading.RLock()  # the replica and the pending transaction
        self.synced = threading.Event()  # the monitor's first reply has arrived
        self.pending: set[Json] = set()  # ids of transactions not answered yet
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._on_change = on_change
        self._on_close = on_close
        self.closed = False

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"ovsdb-{self.owner}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def _send(self, message: Json) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        with self._send_lock:
            self.sock.sendall(data)

    def transact(self, operations: list[Json]) -> None:
        """Send one transaction; its answer (and any error in it) is logged."""
        request_id = f"t{next(self._ids)}"
        with self.lock:
            self.pending.add(request_id)
        LOG.info("%s: transact %d operations", self.owner, len(operations))
        self._send({"method": "transact", "params": [DB, *operations], "id": request_id})

    def _run(self) -> None:
        decoder = json.JSONDecoder()
        buffer = ""
        try:
            self._send({"method": "monitor", "params": monitor_request(MONITOR_ID), "id": "monitor"})
            while not self.closed:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk.decode()
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except json.JSONDecodeError:
                        break  # incomplete: wait for more
                    buffer = buffer[end:]
                    self._handle(message)
        except (OSError, ValueError) as err:
            if not self.closed:
                LOG.warning("%s (%s): connection failed: %s", self.owner, self.peer, err)
        finally:
            self.close()
            self._on_close(self)

    def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "echo":
            self._send({"id": message.get("id"), "result": message.get("params", []), "error": None})
            return
        if method == "update":
            with self.lock:
                self.replica.apply(message["params"][1])
            self._on_change(self)
            return
        if method is not None:
            return  # notifications we did not ask for (none expected)
        request_id = message.get("id")
        if request_id == "monitor":
            if message.get("error"):
                raise ValueError(f"monitor refused: {message['error']}")
            with self.lock:
                self.replica.apply(message["result"])
            self.synced.set()
            self._on_change(self)
            return
        errors = [r for r in (message.get("result") or []) if isinstance(r, dict) and "error" in r]
        if message.get("error") or errors:
            LOG.error("%s: transaction %s failed: %s", self.owner, request_id, message.get("error") or errors)
        with self.lock:
            self.pending.discard(request_id)
        self._on_change(self)
