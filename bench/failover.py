"""Failover benchmark: how long an ISP outage interrupts traffic, and what it costs.

Three phases, one network:
1. N runs (default 5): ISP A silently drops everything (its link to the MSPMB stays up)
   while a 1000 packets/s UDP stream flows each way and a TCP transfer runs.
2. Full rate, no failure: a saturating TCP transfer in both directions at once (default
   60 s) must cause no BFD state change and no path change.
3. Failover at full rate: phase 1's failure while that saturating transfer runs (default 3).
Prints one line per run, then one JSON object (last line).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.common import metric_total, run_directory
from topologies.controller import Controller
from topologies.faults import isp_blackhole
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, TcpResult, TcpTransfer, wait_reachable
from topologies.network import ReferenceNetwork
from topologies.reference import DEFAULT_ISP_RATE_MBIT
from topologies.scenario import FailoverResult, bfd_flap_counts, isp_failure, running, wait_all_bfd_up, wait_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-rate-seconds", type=float, default=60.0)
    parser.add_argument("--full-rate-runs", type=int, default=3,
                        help="failovers during the saturating transfer")
    parser.add_argument("--isp-rate-mbit", type=int, default=DEFAULT_ISP_RATE_MBIT,
                        help="each ISP's access rate (0: unlimited: the 2-core CPU becomes the bottleneck)")
    args = parser.parse_args()
    guard = LeakGuard()
    with run_directory("msp-bench-") as run_dir, \
            running(run_dir, isp_rate_mbit=args.isp_rate_mbit, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        runs = [failover_run(net, f"run {i + 1}", 6000 + 10 * i) for i in range(args.runs)]
        quiet = full_rate_quiet(net, controller, args.full_rate_seconds)
        loaded = []
        for index in range(args.full_rate_runs):
            load = TcpTransfer(net["h1"], net["server"], SERVER4, 9, port=7211 + index, bidir=True)
            wait_path(net, "ispA")
            load.start()
            try:
                loaded.append(failover_run(net, f"full-rate run {index + 1}", 6500 + 10 * index,
                                           tcp_bitrate="1M"))
            finally:
                load.result()
    summary: dict[str, Any] = {
        "runs": len(runs),
        "bfd_interval_ms": int(net.config.bfd_interval_ms),
        **outage_figures(runs, ""),
        "tcp_survived": all(r.tcp.survived for r in runs),
        **quiet,
        "full_rate_runs": len(loaded),
        **outage_figures(loaded, "_full_rate"),
        "isp_rate_mbit": args.isp_rate_mbit,
        "leaked_packets": guard.final_count,
    }
    print(json.dumps(summary))
    return 0


def failover_run(net: ReferenceNetwork, label: str, port_base: int, tcp_bitrate: str = "20M") -> FailoverResult:
    wait_path(net, "ispA")
    try:
        result = isp_failure(net, "ispA", port_base=port_base, tcp_bitrate=tcp_bitrate)
    finally:
        isp_blackhole(net["ispA"], False)
    print(f"{label}: up {result.up.max_gap_ms:.1f} ms gap / {result.up.lost} lost, "
          f"down {result.down.max_gap_ms:.1f} ms gap / {result.down.lost} lost, "
          f"tcp {'survived' if result.tcp.survived else 'broke: ' + result.tcp.error}", flush=True)
    return result


def full_rate_quiet(net: ReferenceNetwork, controller: Controller, seconds: float) -> dict[str, Any]:
    """Saturate both directions with no failure: count BFD state and path changes."""
    wait_path(net, "ispA")
    wait_all_bfd_up(net)  # the last failover's sessions (edge2's too) are up again
    flaps_before, changes_before = bfd_flap_counts(net), path_changes(controller)
    load = TcpTransfer(net["h1"], net["server"], SERVER4, seconds, port=7201, bidir=True)
    load.start()
    result: TcpResult = load.result()
    flaps_after, changes = bfd_flap_counts(net), path_changes(controller) - changes_before
    flapped = {k: v - flaps_before.get(k, 0) for k, v in flaps_after.items() if v != flaps_before.get(k, 0)}
    print(f"full rate: up {result.mbps()} Mbit/s, down {result.mbps(reverse=True)} Mbit/s for "
          f"{result.seconds:.0f} s, BFD state changes {sum(flapped.values())} {flapped or ''}, "
          f"path changes {changes}", flush=True)
    return {
        "bfd_flaps_full_rate": sum(flapped.values()),
        "path_changes_full_rate": changes,
        "load_mbps_full_rate": round(result.mbps() + result.mbps(reverse=True), 1),
        "load_mbps_full_rate_up": result.mbps(),
        "load_mbps_full_rate_down": result.mbps(reverse=True),
        "full_rate_seconds": round(result.seconds, 1),
    }


def outage_figures(runs: list[FailoverResult], suffix: str) -> dict[str, Any]:
    if not runs:
        return {}
    return {
        f"outage_ms_up{suffix}": statistics.median(r.up.max_gap_ms for r in runs),
        f"outage_ms_down{suffix}": statistics.median(r.down.max_gap_ms for r in runs),
        f"outage_ms_up{suffix}_max": max(r.up.max_gap_ms for r in runs),
        f"outage_ms_down{suffix}_max": max(r.down.max_gap_ms for r in runs),
        f"lost_up{suffix}": statistics.median(r.up.lost for r in runs),
        f"lost_down{suffix}": statistics.median(r.down.lost for r in runs),
    }


def path_changes(controller: Controller) -> int:
    """Class moves so far, as the controller counts them (msp_path_changes_total)."""
    return int(metric_total(controller, "msp_path_changes"))


if __name__ == "__main__":
    sys.exit(main())
