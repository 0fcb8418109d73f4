"""Prometheus metrics, served at GET /metrics: one registry per controller (never the
library's global one, so two controllers or two tests in a process never mix).

Events the core does not see are counted here as they happen: packet-ins by OpenFlow
reason (the Ryu shell calls `packet_in`) and REST requests with their latency (the REST
layer calls `rest_request`). Everything else is read from the core when Prometheus
scrapes (metrics_core.py). Counters are plain integers: the controller runs on one
eventlet thread, and no `_created` series double their count.
"""
from __future__ import annotations

import bisect
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from msp_controller.api.metrics_core import CoreCollector
    from msp_controller.core.msp import MspCore

# Our names need no escaping, so the text is format 0.0.4, which every Prometheus reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PER_HOMENET_ENV = "MSP_METRICS_PER_HOMENET"  # auto (default), 1 (always) or 0 (aggregates only)
# OpenFlow 1.3 packet-in reasons (OFPR_*); anything else is "other".
PACKET_IN_REASONS = {0: "no_match", 1: "action", 2: "invalid_ttl"}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")  # else "other": bounded labels
# A read answers in milliseconds; a change waits up to 2 s for the switches' barrier replies.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def per_homenet_from(environ: Mapping[str, str]) -> bool | None:
    """Whether to export per-homenet series: True, False, or None (auto: while the homenets
    are few, see metrics_core.py). ValueError naming the variable for anything else."""
    value = environ.get(PER_HOMENET_ENV, "auto").strip().lower()
    if value in ("auto", ""):
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{PER_HOMENET_ENV}={value!r}: expected auto, 1 (per-homenet series always) "
                     "or 0 (aggregates only)")


class _Latency:
    """One histogram: counts per bucket (not cumulative), their sum."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last one: above every bound
        self.total_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total_s += seconds

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, out = 0, []
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), self.counts, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        return out


class _EventCounters(Collector):
    def __init__(self) -> None:
        self.packet_ins: Counter[str] = Counter({reason: 0 for reason in (*PACKET_IN_REASONS.values(), "other")})
        self.requests: Counter[tuple[str, str]] = Counter()
        self.latency: dict[str, _Latency] = {}

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        packet_ins = CounterMetricFamily("msp_packet_ins", "OpenFlow packet-ins received, by reason",
                                         labels=["reason"])
        for reason, count in sorted(self.packet_ins.items()):
            packet_ins.add_metric([reason], count)
        requests = CounterMetricFamily("msp_rest_requests", "REST requests answered, by method and HTTP status",
                                       labels=["method", "status"])
        for (method, status), count in sorted(self.requests.items()):
            requests.add_metric([method, status], count)
        latency = HistogramMetricFamily("msp_rest_request_duration_seconds", "Time to answer a REST request",
                                        labels=["method"])
        for method, histogram in sorted(self.latency.items()):
            latency.add_metric([method], histogram.buckets(), histogram.total_s)
        yield from (packet_ins, requests, latency)


class ControllerMetrics:
    def __init__(self, per_homenet: bool | None = None, process: bool = True,
                 pause: Callable[[], None] | None = None) -> None:
        """per_homenet: export the per-path and per-class series always (True), never (False)
        or while the homenets are few (None); process: the process_* metrics (CPU, memory,
        open files) of this process; pause: lets the controller's other work run during a
        long scrape (in Ryu: lambda: hub.sleep(0))."""
        self.per_homenet = per_homenet
        self.pause = pause
        self.registry = CollectorRegistry(auto_describe=False)
        self._events = _EventCounters()
        self.registry.register(self._events)
        self._core: CoreCollector | None = None
        if process:
            ProcessCollector(registry=self.registry)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ,
                         pause: Callable[[], None] | None = None) -> ControllerMetrics:
        return cls(per_homenet=per_homenet_from(environ), pause=pause)

    def watch(self, core: MspCore, bgp_sessions: Callable[[], dict[str, str]] = dict,
              clock: Callable[[], float] = time.monotonic,
              edge_shapers: Callable[[], dict[str, dict[str, Any]]] = dict) -> None:
        """Export this core's state (once: a second core would duplicate every series), and
        the edges' shapers as edge_shapers() sees them (CoreService.edge_shapers)."""
        from msp_controller.api.metrics_core import CoreCollector  # late: rest.py need not load the core

        if self._core is not None:
            raise ValueError("these metrics already watch a core")
        self._core = CoreCollector(core, bgp_sessions, clock, self.per_homenet, self.pause, edge_shapers)
        self.registry.register(self._core)

    # --- events, counted as they happen --------------------------------------------------------

    def packet_in(self, reason: int) -> None:
        self._events.packet_ins[PACKET_IN_REASONS.get(reason, "other")] += 1

    def rest_request(self, method: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._events.requests[(method, str(status))] += 1
        self._events.latency.setdefault(method, _Latency()).observe(seconds)

    # --- scraping -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)
