"""Failover benchmark: how long an ISP outage interrupts traffic, and what it costs.

N runs (default 5). In each, ISP A silently drops everything (its link to the MSPMB stays
up) while a 1000 packets/s UDP stream flows each way and a TCP transfer runs. Then a
separate phase runs a saturating iperf3 transfer for 10 s with no failure and counts BFD
state changes. Prints one line per run, then one JSON object (last line).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile

from topologies.faults import isp_blackhole
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, TcpTransfer, wait_reachable
from topologies.reference import DEFAULT_ISP_RATE_MBIT
from topologies.scenario import bfd_flap_counts, isp_failure, running, wait_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--isp-rate-mbit", type=int, default=DEFAULT_ISP_RATE_MBIT,
                        help="each ISP's access rate (0: unlimited: the 2-core CPU becomes the bottleneck)")
    args = parser.parse_args()
    run_dir = tempfile.mkdtemp(prefix="msp-bench-", dir="/run")
    runs = []
    guard = LeakGuard()
    with running(run_dir, isp_rate_mbit=args.isp_rate_mbit, guard=guard) as (net, controller):
        bfd_ms = controller_bfd_ms(net)
        wait_reachable(net["h1"], SERVER4, timeout=60)
        for index in range(args.runs):
            wait_path(net, "ispA")
            result = isp_failure(net, "ispA", port_base=6000 + 10 * index)
            isp_blackhole(net["ispA"], False)
            runs.append(result)
            print(f"run {index + 1}: up {result.up.max_gap_ms:.1f} ms gap / {result.up.lost} lost, "
                  f"down {result.down.max_gap_ms:.1f} ms gap / {result.down.lost} lost, "
                  f"tcp {'survived' if result.tcp.survived else 'broke: ' + result.tcp.error}", flush=True)
        wait_path(net, "ispA")
        flaps_before = bfd_flap_counts(net)
        load = TcpTransfer(net["h1"], net["server"], SERVER4, args.load_seconds, bitrate="0", port=7201)
        load.start()
        load_result = load.result()
        flaps_after = bfd_flap_counts(net)
        flapped = {k: flaps_after[k] - flaps_before.get(k, 0) for k in flaps_after
                   if flaps_after[k] != flaps_before.get(k, 0)}
        flaps = sum(flapped.values())
        print(f"load: {load_result.bytes_sent * 8 / max(load_result.seconds, 1e-9) / 1e6:.0f} Mbit/s for "
              f"{load_result.seconds:.1f} s, BFD state changes {flaps} {flapped or ''}", flush=True)
    summary = {
        "runs": len(runs),
        "bfd_interval_ms": bfd_ms,
        "outage_ms_up": statistics.median(r.up.max_gap_ms for r in runs),
        "outage_ms_down": statistics.median(r.down.max_gap_ms for r in runs),
        "outage_ms_up_max": max(r.up.max_gap_ms for r in runs),
        "outage_ms_down_max": max(r.down.max_gap_ms for r in runs),
        "lost_up": statistics.median(r.up.lost for r in runs),
        "lost_down": statistics.median(r.down.lost for r in runs),
        "tcp_survived": all(r.tcp.survived for r in runs),
        "bfd_flaps": flaps,
        "load_mbps": round(load_result.bytes_sent * 8 / max(load_result.seconds, 1e-9) / 1e6, 1),
        "isp_rate_mbit": args.isp_rate_mbit,
    }
    summary["leaked_packets"] = guard.final_count
    print(json.dumps(summary))
    return 0


def controller_bfd_ms(net) -> int:
    return int(net.config.bfd_interval_ms)


if __name__ == "__main__":
    sys.exit(main())
