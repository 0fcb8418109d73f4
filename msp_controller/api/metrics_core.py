"""The core's state as Prometheus metrics, read when Prometheus scrapes (nothing is updated
per event): paths, classes, switches, BGP, and the core's own running totals.

The per-homenet series (per path and per class) are what grows with the deployment, and
rendering them is what makes a scrape slow: per_homenet True or False exports them always
or never; None (auto) while there are at most AUTO_PER_HOMENET_LIMIT homenets. The
aggregates are always there (docs/operations.md: cardinality).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from msp_controller.core.homenet import DIRECTIONS
from msp_controller.core.path_status import PATH_STATES, homenet_path_status
from msp_controller.core.registry import Kind
from msp_controller.core.switch_report import switch_report

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

AUTO_PER_HOMENET_LIMIT = 1000  # about 0.3 s per scrape here; beyond it, aggregates only
PAUSE_EVERY = 200  # homenets between two pauses: a scrape must not hold the controller's thread
NO_PATH = "none"  # the path label of a class that has no path in a direction
ESTABLISHED = "established"
SWITCH_STATES = ("reconciled", "connected", "disconnected")  # connected: not reconciled yet
ROLES = tuple(kind.value for kind in Kind)
PATH_LABELS = ["homenet", "path"]


def _ms_to_s(value: float) -> float:
    return value / 1000.0


class CoreCollector(Collector):
    def __init__(self, core: MspCore, bgp_sessions: Callable[[], dict[str, str]],
                 clock: Callable[[], float], per_homenet: bool | None = None,
                 pause: Callable[[], None] | None = None,
                 edge_shapers: Callable[[], dict[str, dict[str, Any]]] = dict) -> None:
        """pause: lets the controller's other work run (Ryu: hub.sleep(0)), called every
        PAUSE_EVERY homenets."""
        self.core = core
        self.bgp_sessions = bgp_sessions
        self.clock = clock
        self.per_homenet = per_homenet
        self.pause = pause
        self.edge_shapers = edge_shapers

    def includes_homenets(self) -> bool:
        """Whether this scrape carries the per-homenet series."""
        if self.per_homenet is not None:
            return self.per_homenet
        return len(self.core.homenets) <= AUTO_PER_HOMENET_LIMIT

    def describe(self) -> list[Metric]:
        return []  # families depend on the state; the registry must not call collect() to learn them

    def collect(self) -> Iterator[Metric]:
        yield from self._homenets()
        yield from self._switches()
        yield from self._bgp()
        yield from self._edge_shapers()
        yield from self._totals()

    # --- paths and classes ------------------------------------------------------------------

    def _homenets(self) -> Iterator[Metric]:
        core, now, per_homenet = self.core, self.clock(), self.includes_homenets()
        up = GaugeMetricFamily("msp_path_up", "1 when both ends of the tunnel path report it live, else 0 "
                                              "(down, or not known: a box not connected)", labels=PATH_LABELS)
        state_info = GaugeMetricFamily("msp_path_state", "The path's state (up, down or unknown) as a label; "
                                                         "always 1", labels=[*PATH_LABELS, "state"])
        rtt = GaugeMetricFamily("msp_path_rtt_seconds", "Median probe round-trip time over the probe window; "
                                                        "absent until measured", labels=PATH_LABELS)
        jitter = GaugeMetricFamily("msp_path_jitter_seconds", "Mean difference of consecutive probe RTTs over "
                                                              "the probe window", labels=PATH_LABELS)
        loss = GaugeMetricFamily("msp_path_loss_ratio", "Share of probes lost over the probe window (0 to 1)",
                                 labels=PATH_LABELS)
        active = GaugeMetricFamily("msp_class_active_path", "The path a traffic class uses now in one "
                                                            f"direction (path=\"{NO_PATH}\": none); always 1",
                                   labels=["homenet", "class", "direction", "path"])
        states: Counter[str] = Counter()
        without: Counter[str] = Counter()
        # A snapshot of the names: homenets may come and go while the scrape pauses.
        for index, name in enumerate(list(core.homenets)):
            if self.pause is not None and index and index % PAUSE_EVERY == 0:
                self.pause()
            state = core.homenets.get(name)
            if state is None:
                continue
            statuses = homenet_path_status(core, name)
            for path, status in statuses.items():
                states[status.state] += 1
                if not per_homenet:
                    continue
                labels = [name, str(path)]
                up.add_metric(labels, 1.0 if status.live else 0.0)
                state_info.add_metric([*labels, status.state], 1.0)
                stats = core.path_stats(path, now)
                if stats.rtt_ms is not None:
                    rtt.add_metric(labels, _ms_to_s(stats.rtt_ms))
                if stats.jitter_ms is not None:
                    jitter.add_metric(labels, _ms_to_s(stats.jitter_ms))
                if stats.loss_pct is not None:
                    loss.add_metric(labels, stats.loss_pct / 100.0)
            for direction in DIRECTIONS:
                for choice in state.choices[direction]:
                    if not choice.active:
                        without[direction] += 1
                    if per_homenet:
                        for label in [str(p) for p in choice.active] or [NO_PATH]:
                            active.add_metric([name, choice.name, direction, label], 1.0)
        yield GaugeMetricFamily("msp_homenets", "Homenets served", value=len(core.homenets))
        yield GaugeMetricFamily("msp_metrics_per_homenet", "1 when this scrape has the per-homenet series "
                                                           "(msp_path_*, msp_class_*)", value=float(per_homenet))
        paths = GaugeMetricFamily("msp_paths", "Tunnel paths of all homenets by state", labels=["state"])
        for path_state in PATH_STATES:
            paths.add_metric([path_state], states[path_state])
        yield paths
        classes = GaugeMetricFamily("msp_classes_without_path", "Traffic classes (of all homenets) with no "
                                                                "live path in a direction", labels=["direction"])
        for direction in DIRECTIONS:
            classes.add_metric([direction], without[direction])
        yield classes
        if per_homenet:
            yield from (up, state_info, rtt, jitter, loss, active)

    # --- switches and BGP ---------------------------------------------------------------

    def _switches(self) -> Iterator[Metric]:
        report = switch_report(self.core, self.pause or (lambda: None), listed_all_up_to=0)
        counts = {(role, state): n for role, states in report.counts.items() for state, n in states.items()}
        family = GaugeMetricFamily("msp_switches", "Configured switches by role and state (connected: not "
                                                   "reconciled yet)", labels=["role", "state"])
        for role in ROLES:
            for state in SWITCH_STATES:
                family.add_metric([role, state], counts[(role, state)])
        yield family
        yield GaugeMetricFamily("msp_probes_saturated", "1 when the probe budget cannot probe every path as often "
                                                        "as wanted", value=1.0 if self.core.prober.saturated else 0.0)

    def _edge_shapers(self) -> Iterator[Metric]:
        ago = GaugeMetricFamily("msp_edge_shaper_seconds_since_request", "Seconds since the edge's shaper last "
                                "asked for its shaping (absent: not since the controller started)", labels=["edge"])
        behind = GaugeMetricFamily("msp_edge_shaper_versions_behind", "Store versions the edge's shaper had not "
                                   "applied when it last asked", labels=["edge"])
        for edge, seen in sorted(self.edge_shapers().items()):
            if seen["seen_s_ago"] is not None:
                ago.add_metric([edge], seen["seen_s_ago"])
            if seen["versions_behind"] is not None:
                behind.add_metric([edge], seen["versions_behind"])
        yield from (ago, behind)

    def _bgp(self) -> Iterator[Metric]:
        sessions = self.bgp_sessions()
        up = GaugeMetricFamily("msp_bgp_session_up", "1 when the BGP session is established", labels=["neighbor"])
        state = GaugeMetricFamily("msp_bgp_session_state", "The BGP session's state as a label; always 1",
                                  labels=["neighbor", "state"])
        for neighbor, session in sorted(sessions.items()):
            up.add_metric([neighbor], 1.0 if session == ESTABLISHED else 0.0)
            state.add_metric([neighbor, session], 1.0)
        announced = GaugeMetricFamily("msp_bgp_announced_prefixes", "Prefixes the controller announces to the "
                                                                    "neighbor now", labels=["neighbor"])
        for neighbor, routes in sorted(self.core.bgp_desired().items()):
            announced.add_metric([neighbor], len(routes))
        yield from (up, state, announced)

    # --- the core's running totals ------------------------------------------------------

    def _totals(self) -> Iterator[Metric]:
        core = self.core
        changes = CounterMetricFamily("msp_path_changes", "Times a traffic class moved to another path (or to none)",
                                      labels=["direction"])
        for direction in DIRECTIONS:
            changes.add_metric([direction], core.path_changes_total[direction])
        reconciled = CounterMetricFamily("msp_reconciliations", "Switches reconciled after (re)connecting",
                                         labels=["role"])
        for role in ROLES:
            reconciled.add_metric([role], core.reconciliations[role])
        ignored = CounterMetricFamily("msp_packet_ins_ignored", "Packet-ins the controller had no use for "
                                                                "(foreign frames, stray or forged probe replies)",
                                      value=core.ignored_packets)
        yield from (changes, reconciled, ignored)
