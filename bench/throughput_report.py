"""The throughput benchmark's figures: what one stream measured, medians over runs, the
verdict on what limits throughput, and the final JSON object. Pure: no network here.

Paths: "msp" (the reference network with the controller), "vxlan" (plain OVS VXLAN through
the same boxes), "routed" (kernel routing through the same namespaces). Directions: "up"
(h1 -> server) and "down" (server -> h1). A path's `<path>_mbps` is the mean of its two
directions' medians.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.proc_cpu import USER

PATHS = ("msp", "vxlan", "routed")
DIRECTIONS = ("up", "down")
TARGET_RATIO = 0.9
TARGET_MBPS = 1000.0
MAIN_THREAD = "main thread"
OTHERS = "other processes"  # CPU label: every process the benchmark does not watch
# pmd-stats-show keys (per-thread statistics of the userspace datapath)
PACKETS = "packets received"
UPCALLS = "miss with success upcall"
PASSES_PER_PACKET = "avg. datapath passes per packet"


@dataclass(frozen=True)
class StreamFigures:
    """One ~10 s iperf3 stream on one path in one direction."""

    path: str
    direction: str
    mbps: float  # what the receiver got
    run: int = 1
    retransmits: int = 0
    cpu: Mapping[str, float] = field(default_factory=dict)  # label -> % of one core in the window
    datapath: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # box -> main-thread stats
    megaflows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # box -> flow_summary()
    bfd_flaps: int = 0
    isp_bytes: Mapping[str, int] = field(default_factory=dict)  # ISP -> bytes it forwarded meanwhile
    busiest_others: tuple[tuple[str, float], ...] = ()  # unwatched processes that used most CPU

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"unknown path {self.path!r} (paths: {', '.join(PATHS)})")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r} (directions: {', '.join(DIRECTIONS)})")


def median(values: Iterable[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("no values: nothing was measured")
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator rounded to 3 places; None when the denominator is not positive."""
    return round(numerator / denominator, 3) if denominator > 0 else None


def _of(streams: Sequence[StreamFigures], path: str, direction: str | None = None) -> list[StreamFigures]:
    return [s for s in streams if s.path == path and (direction is None or s.direction == direction)]


def direction_mbps(streams: Sequence[StreamFigures], path: str, direction: str) -> float:
    return round(median(s.mbps for s in _of(streams, path, direction)), 1)


def path_mbps(streams: Sequence[StreamFigures], path: str) -> float:
    return round(statistics.fmean(direction_mbps(streams, path, d) for d in DIRECTIONS), 1)


def paired_ratio(streams: Sequence[StreamFigures], path: str, reference: str) -> float | None:
    """Median over runs of path / reference, each run's streams taken together: the paths of
    one run ran minutes apart at most, so a background load that comes and goes between
    runs weighs on both sides of each ratio."""
    ratios = []
    for run in sorted({s.run for s in streams}):
        ours = sum(s.mbps for s in streams if s.run == run and s.path == path)
        theirs = sum(s.mbps for s in streams if s.run == run and s.path == reference)
        value = ratio(ours, theirs)
        if value is not None:
            ratios.append(value)
    return round(median(ratios), 3) if ratios else None


def cpu_medians(streams: Sequence[StreamFigures], path: str, direction: str) -> dict[str, float]:
    """Median over runs of each CPU label (labels seen in every stream)."""
    chosen = _of(streams, path, direction)
    labels = set.intersection(*(set(s.cpu) for s in chosen)) if chosen else set()
    return {label: round(median(s.cpu[label] for s in chosen), 1) for label in sorted(labels)}


def main_thread(box: str) -> str:
    """CPU label of a box's ovs-vswitchd main thread, which polls every non-PMD port."""
    return f"{box} ovs-vswitchd/ovs-vswitchd"


def datapath_medians(streams: Sequence[StreamFigures], path: str, direction: str) -> dict[str, dict[str, float]]:
    """Per box, medians over the path's streams in one direction: packets per second its
    datapath received; microseconds of its main thread per packet, all of it and in user
    space alone (OVS's own work: the rest is the kernel's, including the forwarding and TCP
    work of the namespaces its sends wake); upcalls per 1000 packets; datapath passes per
    packet (recirculation: 2 for a tunnel pop); megaflows."""
    chosen = _of(streams, path, direction)
    boxes = set.intersection(*(set(s.datapath) for s in chosen)) if chosen else set()
    out: dict[str, dict[str, float]] = {}
    for box in sorted(boxes):
        stats = [(s.datapath[box], s.cpu.get(main_thread(box), 0.0), s.cpu.get(main_thread(box) + USER, 0.0))
                 for s in chosen]
        figures = {
            "kpackets_per_s": round(median(st.get("kpps", 0.0) for st, _, _ in stats), 1),
            # % of a core / (k packets/s) = 10 x microseconds per packet
            "main_thread_us_per_packet": round(median(10 * cpu / max(st.get("kpps", 0.0), 1e-9)
                                                      for st, cpu, _ in stats), 2),
            "main_thread_user_us_per_packet": round(median(10 * user / max(st.get("kpps", 0.0), 1e-9)
                                                           for st, _, user in stats), 2),
            "upcalls_per_1000_packets": round(median(1000 * st.get(UPCALLS, 0.0) / max(st.get(PACKETS, 0.0), 1.0)
                                                     for st, _, _ in stats), 2),
            "passes_per_packet": round(median(st.get(PASSES_PER_PACKET, 0.0) for st, _, _ in stats), 2),
        }
        flows = [s.megaflows[box] for s in chosen if box in s.megaflows]
        if flows:
            figures["megaflows"] = median(f["megaflows"] for f in flows)
            figures["slow_path_packets"] = median(f["slow_path_packets"] for f in flows)
        out[box] = figures
    return out


def cpu_per_gbit(streams: Sequence[StreamFigures], path: str, direction: str) -> dict[str, float]:
    """Each CPU label's median share (% of a core) per Gbit/s the path carried: what one
    bit costs where. On a saturated machine the path that costs less per bit goes faster."""
    gbit = direction_mbps(streams, path, direction) / 1000
    if gbit <= 0:
        return {}
    return {label: round(value / gbit, 1) for label, value in cpu_medians(streams, path, direction).items()}


def extra_cost(streams: Sequence[StreamFigures], direction: str, count: int = 4) -> list[tuple[str, float, float]]:
    """Where the MSP path spends more CPU per bit than plain VXLAN: (label, msp, vxlan) in
    % of a core per Gbit/s, largest increase first (threads, not their whole process)."""
    msp, vxlan = cpu_per_gbit(streams, "msp", direction), cpu_per_gbit(streams, "vxlan", direction)
    labels = [label for label, _ in busiest({k: v for k, v in msp.items() if k in vxlan}, count=len(msp))]
    rows = sorted(((label, msp[label], vxlan[label]) for label in labels),
                  key=lambda row: row[1] - row[2], reverse=True)
    return [row for row in rows if row[1] > row[2]][:count]


def machine_us_per_packet(streams: Sequence[StreamFigures], path: str, direction: str, mtu: int) -> float:
    """Microseconds of the whole machine's CPU per full-size data packet the path delivered
    (everything: sender, receiver, routers, boxes, ACKs, and whatever else ran)."""
    kpps = direction_mbps(streams, path, direction) * 1000 / 8 / mtu  # Mbit/s -> k packets/s of mtu bytes
    busy = cpu_medians(streams, path, direction).get("machine busy", 0.0)
    return round(10 * busy / kpps, 2) if kpps > 0 else 0.0


def busiest(cpu: Mapping[str, float], count: int = 4) -> list[tuple[str, float]]:
    """The labels that used most CPU, threads before their whole process and user time not
    apart (no double count), the machine's own totals left out."""
    threads = {label.split("/")[0] for label in cpu if "/" in label}
    chosen = {label: value for label, value in cpu.items()
              if not label.startswith("machine") and label not in threads and not label.endswith(USER)}
    return sorted(chosen.items(), key=lambda item: item[1], reverse=True)[:count]


def limit_text(streams: Sequence[StreamFigures], overlay_mtu: int, underlay_mtu: int, cores: int) -> str:
    """What limits throughput, from the measurements: CPU (the machine, the busiest threads,
    what else ran), where the MSP path spends more per bit than plain VXLAN, the MTU and
    the checksum offloads."""
    parts = []
    for path in PATHS:
        cpu = cpu_medians(streams, path, "up")
        if not cpu:
            continue
        top = ", ".join(f"{label} {value:.0f}%" for label, value in busiest(cpu))
        parts.append(f"{path} up: machine {cpu.get('machine busy', 0):.0f}% of {100 * cores}% "
                     f"(softirq {cpu.get('machine softirq', 0):.0f}%), busiest {top}")
    saturated = all(cpu_medians(streams, p, "up").get("machine busy", 0) >= 90 * cores
                    for p in PATHS if _of(streams, p))
    verdict = (f"CPU-bound: all {cores} cores busy on every path" if saturated
               else "not every path saturates the CPU")
    others = median(s.cpu.get(OTHERS, 0.0) for s in streams) if streams else 0.0
    if others >= 10:
        verdict += (f" (processes outside the benchmark took a median {others:.0f}% of a core: "
                    "the figures are lower than on an idle machine)")
    for direction in DIRECTIONS:
        rows = extra_cost(streams, direction)
        if rows:
            parts.append(f"MSP vs plain VXLAN {direction}, % of a core per Gbit/s: "
                         + ", ".join(f"{label} {msp:.0f} vs {vxlan:.0f}" for label, msp, vxlan in rows))
    return (f"{verdict}; " + "; ".join(parts) + f". Overlay MTU {overlay_mtu} over a {underlay_mtu} underlay "
            f"(VXLAN adds 50 bytes), so each TCP segment is at most {overlay_mtu - 52} bytes of payload; "
            "senders run with tx checksum offload off (OVS 3.1's userspace VXLAN drops packets whose "
            "checksum was left to offload), which also turns off TSO/GSO: every segment crosses "
            "each OVS datapath as one packet, polled by one non-PMD main thread per box")


def summary(streams: Sequence[StreamFigures], runs: int, seconds: float, leaked_packets: int | None,
            limit: str, mtu: Mapping[str, int], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark's final JSON object (mtu: each path's MTU as its hosts see it)."""
    result: dict[str, Any] = {"runs": runs, "seconds": seconds}
    for path in PATHS:
        result[f"{path}_mbps"] = path_mbps(streams, path)
        for direction in DIRECTIONS:
            result[f"{path}_mbps_{direction}"] = direction_mbps(streams, path, direction)
    result["ratio_msp_vxlan"] = ratio(result["msp_mbps"], result["vxlan_mbps"])
    for direction in DIRECTIONS:
        result[f"ratio_msp_vxlan_{direction}"] = ratio(result[f"msp_mbps_{direction}"],
                                                       result[f"vxlan_mbps_{direction}"])
    result["ratio_msp_vxlan_paired"] = paired_ratio(streams, "msp", "vxlan")
    result["ratio_vxlan_routed"] = ratio(result["vxlan_mbps"], result["routed_mbps"])
    result["meets_ratio_target"] = (result["ratio_msp_vxlan"] or 0) >= TARGET_RATIO
    result["meets_gbit_target"] = result["msp_mbps"] >= TARGET_MBPS
    result["bfd_flaps"] = {path: sum(s.bfd_flaps for s in _of(streams, path)) for path in PATHS}
    result["retransmits"] = {path: round(median(s.retransmits for s in _of(streams, path))) for path in PATHS}
    result["cpu_pct"] = {f"{path}_{d}": cpu_medians(streams, path, d) for path in PATHS for d in DIRECTIONS}
    result["cpu_pct_per_gbit"] = {f"{path}_{d}": cpu_per_gbit(streams, path, d)
                                  for path in ("msp", "vxlan") for d in DIRECTIONS}
    result["msp_extra_cpu_per_gbit"] = {d: [{"label": label, "msp": msp, "vxlan": vxlan}
                                            for label, msp, vxlan in extra_cost(streams, d)] for d in DIRECTIONS}
    result["datapath"] = {f"{path}_{d}": datapath_medians(streams, path, d)
                          for path in ("msp", "vxlan") for d in DIRECTIONS}
    result["machine_us_per_packet"] = {f"{path}_{d}": machine_us_per_packet(streams, path, d, mtu[path])
                                       for path in PATHS for d in DIRECTIONS}
    result["leaked_packets"] = leaked_packets
    result["limit"] = limit
    result.update(extra or {})
    return result
