"""Edge failover benchmark: edge1 fails while 1000 packets/s flow each way between h1 and
the server and a TCP connection runs from the server to h1.

Per run: the time until the Internet core's BIRD has only routes via edge2 for the PI
prefixes (BGP convergence), the longest gap and the packets lost each way, and whether
the TCP connection survived. Then edge1 comes back and we wait for it to be preferred
again. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from bench.common import run_directory
from topologies.bird import routes
from topologies.controller import wait_for
from topologies.faults import start_edge, stop_edge
from topologies.leak_guard import LeakGuard
from topologies.measure import H1_4, SERVER4, TcpTransfer, UdpStream, wait_reachable
from topologies.scenario import running

PREFIXES = ("198.51.100.0/24", "2001:db8:100::/48")
UP1_AS, UP2_AS = 64501, 64502


def upstreams(net, prefix: str) -> set[int]:
    return {r.as_path[0] for r in routes(net["inet"], prefix, exact=True) if r.as_path}


def best_is_edge1(net) -> bool:
    return all(any(r.primary and r.as_path[:1] == (UP1_AS,) for r in routes(net["inet"], p, exact=True))
               for p in PREFIXES)


def one_run(net, index: int, fail_at: float = 2.0, seconds: float = 6.0) -> dict:
    up = UdpStream(net["h1"], net["server"], SERVER4, 7000 + 10 * index, seconds)
    down = UdpStream(net["server"], net["h1"], H1_4, 7001 + 10 * index, seconds)
    tcp = TcpTransfer(net["server"], net["h1"], H1_4, seconds, bitrate="20M", port=7200 + index)
    failed = threading.Event()
    converged: dict[str, float] = {}
    up.start()
    down.start()
    tcp.start()

    def fail_and_watch() -> None:
        time.sleep(fail_at)  # a schedule: the failure happens mid-stream
        started = time.monotonic()
        stop_edge(net, "edge1")
        failed.set()
        wait_for(lambda: all(upstreams(net, p) == {UP2_AS} for p in PREFIXES), 30, interval=0.01,
                 what="the core to route the PI prefixes via edge2 only")
        converged["ms"] = (time.monotonic() - started) * 1000

    watcher = threading.Thread(target=fail_and_watch)
    watcher.start()
    try:
        up_result, down_result, tcp_result = up.result(), down.result(), tcp.result()
        watcher.join()
    finally:
        up.stop()
        down.stop()
        tcp.stop()
        if failed.is_set():
            start_edge(net, "edge1")
    return {"bgp_converge_ms": converged["ms"], "up": up_result, "down": down_result, "tcp": tcp_result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = []
    guard = LeakGuard()
    with run_directory("msp-bench-edge-") as run_dir, \
            running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        for index in range(args.runs):
            wait_for(lambda: best_is_edge1(net), 60, interval=0.2, what="edge1 preferred again")
            wait_reachable(net["server"], H1_4, timeout=30)
            result = one_run(net, index)
            results.append(result)
            print(f"run {index + 1}: BGP converged in {result['bgp_converge_ms']:.0f} ms; "
                  f"up {result['up'].max_gap_ms:.0f} ms gap / {result['up'].lost} lost; "
                  f"down {result['down'].max_gap_ms:.0f} ms gap / {result['down'].lost} lost; "
                  f"tcp {'survived' if result['tcp'].survived else 'broke: ' + result['tcp'].error}", flush=True)
    print(json.dumps({
        "leaked_packets": guard.final_count,
        "runs": len(results),
        "bgp_converge_ms": round(statistics.median(r["bgp_converge_ms"] for r in results), 1),
        "bgp_converge_ms_max": round(max(r["bgp_converge_ms"] for r in results), 1),
        "outage_ms_up": statistics.median(r["up"].max_gap_ms for r in results),
        "outage_ms_down": statistics.median(r["down"].max_gap_ms for r in results),
        "lost_up": statistics.median(r["up"].lost for r in results),
        "lost_down": statistics.median(r["down"].lost for r in results),
        "tcp_survived": all(r["tcp"].survived for r in results),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
