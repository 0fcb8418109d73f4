"""Dashboard benchmark: how heavy the page is, and how soon a path change reaches a viewer.

On the reference network: the page's weight (HTML + JS + CSS as transferred, uncompressed),
then ISP A fails and recovers --runs times while a subscriber follows home1 on the
dashboard's event stream (/dashboard/events, the browser's own transport). Each path change
event carries the controller's monotonic time of the change (the OpenFlow event that made
it); the latency is from then to the event's arrival at the subscriber (same machine, same
clock). Prints one line per change, then one JSON object (last line):
update_latency_ms (median), update_latency_ms_max, changes, page_kb.
"""
from __future__ import annotations

import argparse
import http.client
import json
import queue
import statistics
import threading
import time
import urllib.parse
from typing import Any

from bench.common import run_directory
from topologies.controller import Controller
from topologies.faults import isp_blackhole
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, wait_reachable
from topologies.scenario import running, wait_path

PAGE = ("/dashboard/", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css")


def _connection(controller: Controller) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(controller.url)
    return http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=30)


def page_bytes(controller: Controller) -> dict[str, int]:
    """Each file of the page, as transferred (body bytes; the server does not compress)."""
    sizes = {}
    for path in PAGE:
        connection = _connection(controller)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        sizes[path] = len(body)
        connection.close()
    return sizes


class Subscriber(threading.Thread):
    """Follows one homenet's event stream; puts (arrival, event data) of each `homenet` event."""

    def __init__(self, controller: Controller, homenet: str) -> None:
        super().__init__(daemon=True)
        self.connection = _connection(controller)
        self.connection.request("GET", f"/dashboard/events?detail={homenet}",
                                headers={"Authorization": f"Bearer {controller.token}"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"event stream: {self.response.status} {self.response.read()[:200]!r}")
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()

    def run(self) -> None:
        kind, data = "", ""
        try:
            while True:
                line = self.response.readline()
                if not line:
                    return
                arrived = time.monotonic()
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    kind = text[7:]
                elif text.startswith("data: "):
                    data = text[6:]
                elif text == "" and kind:
                    if kind == "homenet":
                        self.events.put((arrived, json.loads(data)))
                    kind, data = "", ""
        except (OSError, ValueError, AttributeError):  # http.client, once stop() closed it
            return

    def stop(self) -> None:
        self.connection.close()


def default_egress(view: dict[str, Any]) -> str | None:
    return next(c["egress"] for c in view["classes"] if c["name"] == "default")


def wait_event(subscriber: Subscriber, wanted: str, seen: set[float], timeout: float = 30.0) -> list[float]:
    """Latencies (ms) of the change events until the default class egresses by a path whose
    name starts with `wanted` ("ispB@": either edge, as flap damping may choose)."""
    latencies = []
    deadline = time.monotonic() + timeout
    while True:
        arrived, view = subscriber.events.get(timeout=max(0.1, deadline - time.monotonic()))
        newest = view["changes"][0] if view["changes"] else None
        if newest is not None and newest["at"] not in seen:
            seen.add(newest["at"])
            latencies.append((arrived - newest["at"]) * 1000)
            print(f"change {newest['class']} {newest['direction']} {newest['old']} -> {newest['new']}: "
                  f"on the stream {latencies[-1]:.1f} ms after the controller made it", flush=True)
        if (default_egress(view) or "").startswith(wanted):
            return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="failures and recoveries of ISP A")
    args = parser.parse_args()
    guard = LeakGuard()
    latencies: list[float] = []
    with run_directory("msp-bench-dashboard-") as run_dir, running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        sizes = page_bytes(controller)
        wait_path(net, "ispA")
        subscriber = Subscriber(controller, "home1")
        subscriber.start()
        try:
            seen: set[float] = set()
            first = subscriber.events.get(timeout=10)[1]  # the state as the stream opens
            seen.update(c["at"] for c in first["changes"])
            for _ in range(args.runs):
                isp_blackhole(net["ispA"], True)
                try:
                    latencies += wait_event(subscriber, "ispB@", seen)
                finally:
                    isp_blackhole(net["ispA"], False)
                latencies += wait_event(subscriber, "ispA@edge1", seen)  # after flap damping
                wait_path(net, "ispA")  # and the data plane agrees: the next failure starts steady
        finally:
            subscriber.stop()
    summary = {
        "update_latency_ms": round(statistics.median(latencies), 1),
        "update_latency_ms_max": round(max(latencies), 1),
        "changes": len(latencies),
        "page_kb": round(sum(sizes.values()) / 1024, 1),
        "page_bytes": {path.rsplit("/", 1)[-1] or "index.html": size for path, size in sizes.items()},
        "leaked_packets": guard.final_count,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
