"""Part 1 of the scale benchmark: the pure core (MspCore) against N simulated switches.

Every switch "connects" with the ports the topology would give it, then answers the core's
stats requests as an empty switch (no flows, no groups), which completes its reconciliation.
Nothing is sent anywhere: the figures are the core's own CPU cost.
"""
from __future__ import annotations

import contextlib
import cProfile
import ctypes
import gc
import io
import os
import pstats
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from msp_controller.core import Effects, MspCore, PortState
from msp_controller.dataplane import ofmsg
from msp_controller.model.config import Homenet, MspConfig, edge_slot_port, mspmb_tunnel_port, parse_config
from msp_controller.model.policy import Policy, parse_policy

from .scale_configs import POLICY_A, POLICY_B, SLA_POLICY, config_dict, sla_homenets

PROBE_INTERVAL_S = 0.05  # as the app's probe timer
TICK_S = 1.0  # as the app's periodic tick
REPLY_DELAY_S = 0.002  # a probe's simulated round trip

Ports = dict[str, PortState]


def log(line: str) -> None:
    print(line, flush=True)


@dataclass
class SizeResult:
    homenets: int
    sla_homenets: int
    config_parse_s: float
    core_build_s: float
    cold_start_s: float  # CPU
    cold_start_messages: int
    port_status_ms: float  # median, MSPMB and edge events together
    port_status_p95_ms: float
    port_status_mspmb_ms: float
    port_status_edge_ms: float
    policy_ms: float
    policy_p95_ms: float
    probe_cpu_pct: float  # probes sent, replies received, SLAs judged (plus the 1 s tick)
    probe_send_only_cpu_pct: float  # the same without replies (SLA verdicts then degrade)
    probes_per_s: float
    probe_saturated: bool
    kb_per_homenet: float


# --- the simulated switches ---------------------------------------------------------------


def switch_ports(config: MspConfig) -> dict[int, Ports]:
    """Each switch's ports by datapath id, all live: edges first, then each homenet's boxes."""
    ports: dict[int, Ports] = {}
    for edge in config.edges:
        names = [edge.internet_port] + [edge_slot_port(slot) for slot in range(len(edge.tunnel_addresses))]
        ports[edge.dpid] = _numbered(names)
        ports[edge.underlay_dpid] = _numbered([edge.underlay_port])
    for homenet in config.homenets:
        ports.update(homenet_ports(config, homenet))
    return ports


def homenet_ports(config: MspConfig, homenet: Homenet) -> dict[int, Ports]:
    tunnels = [mspmb_tunnel_port(config.edge(e), u) for e in homenet.edges for u in homenet.uplinks]
    ports = {homenet.dpid: _numbered([*homenet.lan_ports, *tunnels])}
    for uplink in homenet.uplinks:
        ports[uplink.underlay_dpid] = _numbered([uplink.port])
    return ports


def _numbered(names: list[str]) -> Ports:
    return {name: PortState(number, True) for number, name in enumerate(names, start=1)}


def connect(core: MspCore, dpid: int, ports: Ports, now: float) -> int:
    """A switch connects and reports empty tables; returns how many messages the core sent."""
    sent = _count(core.switch_up(dpid, dict(ports), now))
    sent += _count(core.flow_stats(dpid, [], False, now))
    sent += _count(core.group_desc(dpid, {}, False, now))
    return sent + _count(core.meter_config(dpid, {}, False, now))


def _count(effects: Effects) -> int:
    return sum(len(messages) for messages in effects.values())


# --- profiling (optional) --------------------------------------------------------------------


class Profiler:
    """With `enabled`, each phase runs under cProfile and its hot spots are printed."""

    def __init__(self, enabled: bool, top: int = 12) -> None:
        self.enabled = enabled
        self.top = top

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(self.top)
            log(f"--- profile: {name} (top {self.top} by own time)")
            log(_stats_table(text.getvalue()))


def _stats_table(report: str) -> str:
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


# --- the measurements ---------------------------------------------------------------------------


def parse(data: dict[str, Any]) -> tuple[MspConfig, float]:
    started = time.process_time()
    config = parse_config(data)
    return config, time.process_time() - started


def sla_policies(config: MspConfig) -> dict[str, Policy]:
    chosen = set(sla_homenets(h.name for h in config.homenets))
    return {h.name: parse_policy(SLA_POLICY, h) for h in config.homenets if h.name in chosen}


def cold_start(core: MspCore, ports: dict[int, Ports], now: float) -> tuple[float, int]:
    """CPU seconds for every switch to connect and be reconciled; messages sent."""
    started = time.process_time()
    sent = sum(connect(core, dpid, switch, now) for dpid, switch in ports.items())
    elapsed = time.process_time() - started
    missing = [dpid for dpid in ports if not core.switches[dpid].reconciled]
    if missing:
        raise RuntimeError(f"{len(missing)} switches not reconciled after cold start, e.g. {missing[0]:x}")
    return elapsed, sent


def port_status_events(core: MspCore, config: MspConfig, ports: dict[int, Ports], samples: int,
                       rng: random.Random, now: float) -> tuple[list[float], list[float]]:
    """CPU ms per event (other load on the machine does not count): alternately a tunnel
    down, then up, on an MSPMB (the edge follows by the relay), and an uplink renumbered
    (the edges' one per-homenet event: their ports are shared)."""
    edge = config.edges[0]
    mspmb_ms: list[float] = []
    edge_ms: list[float] = []
    for sample in range(samples):
        homenet = rng.choice(config.homenets)
        uplink = rng.choice(homenet.uplinks)
        if sample % 2 == 0:
            number = ports[homenet.dpid][mspmb_tunnel_port(edge, uplink)].number
            for live in (False, True):
                now += 0.01
                started = time.process_time()
                core.port_status(homenet.dpid, mspmb_tunnel_port(edge, uplink), PortState(number, live), now)
                mspmb_ms.append((time.process_time() - started) * 1000)
        else:
            original = core.homenets[homenet.name].spec.uplink(uplink.name).address
            assert original is not None
            for address in (original + 0x8000, original):  # a new lease, then the old one back
                now += 0.01
                started = time.process_time()
                core.set_uplink_address(homenet.name, uplink.name, address, now)
                edge_ms.append((time.process_time() - started) * 1000)
    return mspmb_ms, edge_ms


def policy_changes(core: MspCore, config: MspConfig, samples: int, rng: random.Random, now: float) -> list[float]:
    """CPU ms per set_policy on a random homenet, the two policies alternating."""
    timings = []
    for sample in range(samples):
        homenet = rng.choice(config.homenets)
        now += 0.01
        started = time.process_time()
        core.set_policy(homenet.name, POLICY_A if sample % 2 == 0 else POLICY_B, now)
        timings.append((time.process_time() - started) * 1000)
    return timings


def probe_load(core: MspCore, seconds: float, replies: bool, now: float) -> tuple[float, int, bool]:
    """CPU % of one core spent on probe ticks (and the 1 s tick) over `seconds` simulated;
    with `replies`, every probe comes back as a packet-in REPLY_DELAY_S later."""
    ticks = round(seconds / PROBE_INTERVAL_S)
    per_tick = round(TICK_S / PROBE_INTERVAL_S)
    sent = 0
    saturated = False
    started = time.process_time()
    for index in range(1, ticks + 1):
        at = now + index * PROBE_INTERVAL_S
        effects = core.probe_tick(at)
        saturated = saturated or core.prober.saturated
        for dpid, messages in effects.items():
            for message in messages:
                if isinstance(message, ofmsg.parser.OFPPacketOut):
                    sent += 1
                    if replies:
                        core.packet_in(dpid, message.actions[0].port, 0, message.data, at + REPLY_DELAY_S)
        if index % per_tick == 0:
            core.tick(at)
    cpu = time.process_time() - started
    return cpu / seconds * 100, sent, saturated


def rss_bytes() -> int:
    """This process's resident set size after a full collection, with the C heap's free
    pages handed back (malloc_trim): garbage and freed slack are not counted as held."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Started:
    config: MspConfig
    core: MspCore
    ports: dict[int, Ports]
    parse_s: float
    build_s: float
    cold_s: float
    messages: int
    kb_per_homenet: float


def start(homenets: int, profiler: Profiler) -> Started:
    """Parse a generated config, build the core, connect every switch; time and weigh it.

    Memory is the growth of RSS over the parse and the core (allocator slack included),
    leaving out the decoded TOML and the simulated switches' port lists, which are not the
    controller's."""
    data = config_dict(homenets)
    rss = rss_bytes()
    with profiler.phase(f"config parse, N={homenets}"):
        config, parse_s = parse(data)
    held = rss_bytes() - rss
    ports = switch_ports(config)
    rss = rss_bytes()
    started = time.process_time()
    with profiler.phase(f"core build, N={homenets}"):
        core = MspCore(config, sla_policies(config))
    build_s = time.process_time() - started
    with profiler.phase(f"cold start, N={homenets}"):
        cold_s, messages = cold_start(core, ports, 1.0)
    held += rss_bytes() - rss
    return Started(config, core, ports, parse_s, build_s, cold_s, messages, held / 1024 / homenets)


def measure(homenets: int, samples: int, probe_seconds: float, seed: int, profiler: Profiler) -> SizeResult:
    rng = random.Random(seed)
    run = start(homenets, profiler)
    core, config = run.core, run.config
    log(f"N={homenets:>6}: config parse {run.parse_s:.2f} s, core build {run.build_s:.2f} s, "
        f"cold start {run.cold_s:.2f} s CPU ({len(run.ports)} switches, {run.messages} messages), "
        f"memory {run.kb_per_homenet:.1f} KB per homenet (RSS growth)")
    with profiler.phase(f"port status, N={homenets}"):
        mspmb_ms, edge_ms = port_status_events(core, config, run.ports, samples, rng, 10.0)
    both = mspmb_ms + edge_ms
    log(f"N={homenets:>6}: tunnel port status {_median(both):.3f} ms median, {_p95(both):.3f} ms p95 "
        f"(MSPMB {_median(mspmb_ms):.3f}, edge {_median(edge_ms):.3f}; {len(both)} events)")
    sla = core.prober.sla_count()
    with profiler.phase(f"probes with replies, N={homenets}"):
        probe_pct, sent, saturated = probe_load(core, probe_seconds, True, 100.0)
    with profiler.phase(f"probes without replies, N={homenets}"):
        send_pct, _, _ = probe_load(core, probe_seconds, False, 100.0 + probe_seconds)
    log(f"N={homenets:>6}: probes {probe_pct:.1f} % of a core with replies, {send_pct:.1f} % without "
        f"({sent / probe_seconds:.0f} probes/s, {sla} sla paths of {len(core.prober.sla)}"
        f"{', budget saturated' if saturated else ''})")
    with profiler.phase(f"policy change, N={homenets}"):
        policy = policy_changes(core, config, samples, rng, 200.0)
    log(f"N={homenets:>6}: policy change {_median(policy):.3f} ms median, {_p95(policy):.3f} ms p95")
    return SizeResult(
        homenets=homenets, sla_homenets=len(sla_homenets(h.name for h in config.homenets)),
        config_parse_s=_r(run.parse_s), core_build_s=_r(run.build_s), cold_start_s=_r(run.cold_s),
        cold_start_messages=run.messages, port_status_ms=_r(_median(both)), port_status_p95_ms=_r(_p95(both)),
        port_status_mspmb_ms=_r(_median(mspmb_ms)), port_status_edge_ms=_r(_median(edge_ms)),
        policy_ms=_r(_median(policy)), policy_p95_ms=_r(_p95(policy)), probe_cpu_pct=_r(probe_pct),
        probe_send_only_cpu_pct=_r(send_pct), probes_per_s=_r(sent / probe_seconds), probe_saturated=saturated,
        kb_per_homenet=_r(run.kb_per_homenet))


def median_of(results: list[SizeResult]) -> SizeResult:
    """Repeats of one size folded into one: the median of each figure."""
    if len(results) == 1:
        return results[0]
    rows = [asdict(r) for r in results]
    merged: dict[str, Any] = {}
    for key, value in rows[0].items():
        values = [row[key] for row in rows]
        merged[key] = any(values) if isinstance(value, bool) else (
            _r(statistics.median(values)) if isinstance(value, float) else value)
    return SizeResult(**merged)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _r(value: float) -> float:
    return round(value, 4)
