"""Flood benchmark: an ISP fails while the Internet scans the homenet and a host storms ARP/ND.

The reference network, N runs (default 3), each:
- from the server (the Internet side), 10,000 UDP packets/s to unassigned addresses of
  home1's prefixes, half IPv4, half IPv6: each misses the MSPMB's neighbour table and would
  go to the controller;
- from h2, 4,000 ARP requests and neighbour solicitations/s from made-up hosts;
- REST in use: GET and PUT of home1's policy in turn, each answer timed;
- two seconds in, ISP A silently drops everything under a 1000 packets/s stream each way
  (bench/failover.py's failure): the homenet's outage and lost packets.
Also measured: packet-ins the controller received per second during the floods (what the
meters admitted), the meters' own counts at the MSPMB, and the controller's memory.
Prints one line per run, then one JSON object (last line): medians over the runs.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from bench.common import api, metric_total, run_directory
from bench.edge_ovs import rss_mb
from topologies.controller import Controller
from topologies.faults import isp_blackhole
from topologies.leak_guard import LeakGuard
from topologies.measure import H1_4, H1_6, H2_4, H2_6, PYTHON, REPO, SERVER4, wait_reachable
from topologies.network import ReferenceNetwork
from topologies.scenario import isp_failure, running, wait_all_bfd_up, wait_path

POLICY = "/api/v1/homenets/home1/policy"
WARMUP_S = 2.0  # floods and REST run this long before ISP A fails
FAILOVER_S = 6.0  # isp_failure's streams (ISP A fails 2.5 s into them)
REST_PAUSE_S = 0.02
TARGET_FAILOVER_MS, TARGET_REST_P99_MS, TARGET_RSS_GROWTH_MB = 100.0, 50.0, 5.0
ERRORS = re.compile(r"Traceback|\bERROR\b")
METER_STATS = re.compile(r"meter:(\d+) flow_count:\d+ packet_in_count:(\d+) .*?0: packet_count:(\d+)", re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scan-rate", type=int, default=10_000, help="packets/s from the Internet")
    parser.add_argument("--storm-rate", type=int, default=4_000, help="ARP/ND packets/s from h2")
    parser.add_argument("--keep-log", help="copy the controller's log here")
    args = parser.parse_args()
    guard = LeakGuard()
    with run_directory("msp-bench-flood-") as run_dir, running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        assert controller.process is not None
        rss_start = rss_mb(controller.process.pid)
        quiet = packet_in_rate(controller, 5.0)
        print(f"quiet: {quiet:.0f} packet-ins/s, controller {rss_start:.1f} MB", flush=True)
        runs = [flood_run(net, controller, args, 7000 + 10 * i, f"run {i + 1}") for i in range(args.runs)]
        rss_end = rss_mb(controller.process.pid)
        log = controller.log_text()
        if args.keep_log:
            pathlib.Path(args.keep_log).write_text(log)
    failover = [max(r["outage_ms_up"], r["outage_ms_down"]) for r in runs]
    summary: dict[str, Any] = {
        "runs": len(runs),
        "scan_pps": args.scan_rate,
        "storm_pps": args.storm_rate,
        "failover_ms_under_flood": statistics.median(failover),
        "failover_ms_under_flood_max": max(failover),
        "outage_ms_up": statistics.median(r["outage_ms_up"] for r in runs),
        "outage_ms_down": statistics.median(r["outage_ms_down"] for r in runs),
        "lost_up": statistics.median(r["lost_up"] for r in runs),
        "lost_down": statistics.median(r["lost_down"] for r in runs),
        "tcp_survived": all(r["tcp_survived"] for r in runs),
        "rest_p99_ms": statistics.median(r["rest_p99_ms"] for r in runs),
        "rest_p50_ms": statistics.median(r["rest_p50_ms"] for r in runs),
        "rest_max_ms": max(r["rest_max_ms"] for r in runs),
        "rest_requests": sum(r["rest_requests"] for r in runs),
        "rest_errors": sum(r["rest_errors"] for r in runs),
        "packet_in_per_s_admitted": statistics.median(r["packet_in_per_s"] for r in runs),
        "packet_in_per_s_quiet": round(quiet, 1),
        "mspmb_meters": runs[-1]["mspmb_meters"],
        "controller_rss_mb": round(rss_end, 1),
        "controller_rss_growth_mb": round(rss_end - rss_start, 1),
        "controller_rss_growth_mb_per_run": [r["rss_growth_mb"] for r in runs],
        "controller_errors": len(ERRORS.findall(log)),
        "leaked_packets": guard.final_count,
    }
    summary["targets_met"] = (summary["failover_ms_under_flood_max"] <= TARGET_FAILOVER_MS
                              and summary["rest_p99_ms"] <= TARGET_REST_P99_MS
                              and summary["controller_rss_growth_mb"] <= TARGET_RSS_GROWTH_MB
                              and summary["rest_errors"] == 0 and summary["controller_errors"] == 0
                              and guard.final_count == 0)
    print(json.dumps(summary))
    return 0


def packet_in_rate(controller: Controller, seconds: float) -> float:
    before, start = metric_total(controller, "msp_packet_ins"), time.monotonic()
    time.sleep(seconds)  # a measuring window, not a wait on a condition
    return (metric_total(controller, "msp_packet_ins") - before) / (time.monotonic() - start)


class RestUser:
    """GET the homenet's policy, PUT it back, again and again; time every answer."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _call(self, method: str, body: Any = None) -> Any:
        start = time.perf_counter()
        try:
            status, answer = api(self.controller, method, POLICY, body)
        except OSError as err:
            self.errors.append(f"{method}: {err}")
            return None
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        if status != 200:
            self.errors.append(f"{method}: {status} {answer}")
            return None
        return answer

    def _run(self) -> None:
        while not self._stop.is_set():
            policy = self._call("GET")
            if policy is not None:
                self._call("PUT", policy)
            self._stop.wait(REST_PAUSE_S)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1) if ordered else 0.0


def _sender(host: Any, *args: str) -> subprocess.Popen[bytes]:
    return host.popen([PYTHON, "-m", "bench.flood_send", *args], cwd=REPO,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    if process.returncode != 0:
        raise RuntimeError(f"{what} sender failed: {err.decode(errors='replace')}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def meter_counts(net: ReferenceNetwork) -> dict[str, dict[str, int]]:
    """Per punt meter at the MSPMB: packets that reached it, and those its band dropped."""
    text = net["mspmb"].ofctl("meter-stats", "br-home")
    return {meter: {"in": int(seen), "dropped": int(dropped)} for meter, seen, dropped in METER_STATS.findall(text)}


def flood_run(net: ReferenceNetwork, controller: Controller, args: argparse.Namespace, port_base: int,
              label: str) -> dict[str, Any]:
    isp_blackhole(net["ispA"], False)
    wait_path(net, "ispA")
    wait_all_bfd_up(net)
    assert controller.process is not None
    rss_before = rss_mb(controller.process.pid)
    meters_before = meter_counts(net)
    seconds = WARMUP_S + FAILOVER_S + 1.0
    home = net.config.homenet("home1")
    v4 = next(str(p) for p in home.prefixes if p.version == 4)
    v6 = next(str(p) for p in home.prefixes if p.version == 6)
    used = ",".join([str(home.lan_ipv4.ip), H1_4, H2_4, H1_6, H2_6] +
                    ([str(home.lan_ipv6.ip)] if home.lan_ipv6 else []))
    h2 = net["h2"]
    rest = RestUser(controller)
    pins_before, start = metric_total(controller, "msp_packet_ins"), time.monotonic()
    scan = _sender(net["server"], "scan", "--v4", v4, "--v6", v6, "--skip", used, "--rate", str(args.scan_rate),
                   "--seconds", str(seconds))
    storm = _sender(h2, "storm", "--intf", h2.defaultIntf().name, "--v4", str(home.lan_ipv4.network),
                    "--v6", str(home.lan_ipv6.network if home.lan_ipv6 else v6), "--rate", str(args.storm_rate),
                    "--seconds", str(seconds))
    rest.start()
    try:
        time.sleep(WARMUP_S)  # the floods' steady state, before the failure
        result = isp_failure(net, "ispA", seconds=FAILOVER_S, port_base=port_base)
        pins_after, end = metric_total(controller, "msp_packet_ins"), time.monotonic()
    finally:
        rest.stop()
        isp_blackhole(net["ispA"], False)
        scanned, stormed = _finish(scan, "scan"), _finish(storm, "storm")
    meters_after = meter_counts(net)
    rss_after = rss_mb(controller.process.pid)
    figures = {
        "outage_ms_up": result.up.max_gap_ms,
        "outage_ms_down": result.down.max_gap_ms,
        "lost_up": result.up.lost,
        "lost_down": result.down.lost,
        "tcp_survived": result.tcp.survived,
        "rest_requests": len(rest.latencies_ms),
        "rest_errors": len(rest.errors),
        "rest_p50_ms": _percentile(rest.latencies_ms, 0.50),
        "rest_p99_ms": _percentile(rest.latencies_ms, 0.99),
        "rest_max_ms": _percentile(rest.latencies_ms, 1.0),
        "packet_in_per_s": round((pins_after - pins_before) / (end - start), 1),
        "scan_sent_pps": round(scanned["sent"] / scanned["seconds"]),
        "storm_sent_pps": round(stormed["sent"] / stormed["seconds"]),
        "mspmb_meters": {meter: {k: v - meters_before.get(meter, {}).get(k, 0) for k, v in counts.items()}
                         for meter, counts in meters_after.items()},
        "rss_growth_mb": round(rss_after - rss_before, 1),
    }
    print(f"{label}: outage up {figures['outage_ms_up']:.1f} ms / {figures['lost_up']} lost, down "
          f"{figures['outage_ms_down']:.1f} ms / {figures['lost_down']} lost; REST p50 {figures['rest_p50_ms']} ms, "
          f"p99 {figures['rest_p99_ms']} ms ({figures['rest_requests']} calls, {figures['rest_errors']} errors); "
          f"{figures['packet_in_per_s']} packet-ins/s admitted (sent: scan {figures['scan_sent_pps']}/s, storm "
          f"{figures['storm_sent_pps']}/s); MSPMB meters {figures['mspmb_meters']}; controller "
          f"{figures['rss_growth_mb']:+.1f} MB", flush=True)
    if rest.errors:
        print(f"{label}: REST errors, first: {rest.errors[0]}", flush=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())
