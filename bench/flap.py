"""Flap benchmark: an ISP that keeps failing, under a TCP transfer and 1000 packets/s each way.

Two phases, one network, the homenet's default policy (flap damping included):
1. Failover right after a restore: ISP A fails, comes back and fails again, first 0.3 s
   after its BFD session is up again (flap damping keeps the traffic off it then), then
   as soon as the controller uses it again (BFD's fast timers apply by then). Each
   outage is compared with the first, a failover from a long-stable path.
2. The storm: ISP A silently drops everything and forwards again 50 times in about 60 s
   (each half 0.6 +- 0.2 s, seeded), then stays up: outages of 30 ms or more and packets
   lost each way, whether TCP survived, the controller's memory and errors, and when
   traffic was back on ISP A.
Prints one line per phase, then one JSON object (last line).
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import re
import sys
import time
from typing import Any

from bench.common import api, class_path, run_directory
from bench.edge_ovs import rss_mb
from bench.failover import path_changes
from topologies.controller import Controller, wait_for
from topologies.faults import isp_blackhole
from topologies.leak_guard import LeakGuard
from topologies.measure import H1_4, SERVER4, StreamResult, TcpTransfer, UdpStream, wait_reachable
from topologies.network import ReferenceNetwork
from topologies.scenario import running, wait_all_bfd_up, wait_path

OUTAGE_MS = 30.0  # a gap this long or longer counts as an outage
PREFERRED = "ispA@edge1"  # the default class's path while ISP A is trusted
GAP_SLACK_S = 0.05  # a failure's gap begins at the last packet before it: just before it
ERRORS = re.compile(r"Traceback|\bERROR\b")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flaps", type=int, default=50, help="down/up cycles of ISP A in the storm")
    parser.add_argument("--half-s", type=float, default=0.6, help="mean length of each down or up half")
    parser.add_argument("--jitter-s", type=float, default=0.2, help="each half is --half-s +- this, uniformly")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    halves = [rng.uniform(args.half_s - args.jitter_s, args.half_s + args.jitter_s) for _ in range(2 * args.flaps)]
    guard = LeakGuard()
    with run_directory("msp-bench-flap-") as run_dir, running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        damping = api(controller, "GET", "/api/v1/homenets/home1/policy")[1]["damping"]
        restore = restore_phase(net, controller, damping)
        storm = storm_phase(net, controller, halves, damping)
        errors = len(ERRORS.findall(controller.log_text()))
    summary: dict[str, Any] = {
        **storm,
        **restore,
        "damping": damping,
        "controller_errors": errors,
        "leaked_packets": guard.final_count,
    }
    summary["targets_met"] = (summary["storm_outages_30ms"] <= 2 and summary["storm_lost_up"] <= 300
                              and summary["storm_lost_down"] <= 300 and summary["tcp_survived"]
                              and summary["back_on_isp_a"] and errors == 0 and guard.final_count == 0)
    print(json.dumps(summary))
    return 0


def restore_phase(net: ReferenceNetwork, controller: Controller, damping: dict[str, float]) -> dict[str, Any]:
    """One stream each way across: a failure from a stable path; a failure 0.3 s after the
    restore's BFD came up; a failure as soon as the controller trusts ISP A again."""
    wait_path(net, "ispA")
    wait_all_bfd_up(net)
    seconds = 15.0 + damping["max_hold_s"]  # enough for the longest wait for trust
    up = UdpStream(net["h1"], net["server"], SERVER4, 6300, seconds)
    down = UdpStream(net["server"], net["h1"], H1_4, 6301, seconds)
    marks: dict[str, tuple[float, float]] = {}  # failure: (failed, restored)
    try:
        up.start()
        down.start()
        start = time.monotonic()
        _at(start + 1.0)
        marks["stable"] = _fail_and_restore(net, 1.5)
        wait_for(lambda: _bfd_up(net), 10, interval=0.01, what="BFD up over ispA")
        _at(time.monotonic() + 0.3)
        marks["early"] = _fail_and_restore(net, 1.5)
        wait_for(lambda: class_path(controller, "default") == PREFERRED, seconds - (time.monotonic() - start) - 3,
                 interval=0.05, what="the controller to use ISP A again")
        marks["trusted"] = _fail_and_restore(net, 1.5)
        results = up.result(), down.result()
    finally:
        up.stop()
        down.stop()
        isp_blackhole(net["ispA"], False)
    # Each failure's outage: the gaps that began after it failed, before the next failure.
    bounds = [marks["stable"][0], marks["early"][0], marks["trusted"][0], start + seconds + 5]
    figures: dict[str, Any] = {}
    for index, name in enumerate(("stable", "early", "trusted")):
        for direction, result in zip(("up", "down"), results, strict=True):
            gaps = [gap for _, gap in result.gaps_between(bounds[index] - GAP_SLACK_S, bounds[index + 1] - GAP_SLACK_S)]
            figures[f"failover_{name}_ms_{direction}"] = max(gaps, default=0.0)
    figures["trusted_again_after_restore_s"] = round(marks["trusted"][0] - marks["early"][1], 1)
    print(f"failover after a restore: from a stable path {_pair(figures, 'stable')} ms; 0.3 s after BFD up "
          f"{_pair(figures, 'early')} ms; as soon as trusted again "
          f"({figures['trusted_again_after_restore_s']} s after the restore) {_pair(figures, 'trusted')} ms",
          flush=True)
    return figures


def storm_phase(net: ReferenceNetwork, controller: Controller, halves: list[float],
                damping: dict[str, float]) -> dict[str, Any]:
    wait_for(lambda: class_path(controller, "default") == PREFERRED, damping["max_hold_s"] + 30, interval=0.2,
             what="the controller to use ISP A again")
    wait_path(net, "ispA")
    wait_all_bfd_up(net)
    assert controller.process is not None
    rss_before = rss_mb(controller.process.pid)
    changes_before = path_changes(controller)
    seconds = 2.0 + sum(halves) + 3.0
    h1, server = net["h1"], net["server"]
    up = UdpStream(h1, server, SERVER4, 6400, seconds)
    down = UdpStream(server, h1, H1_4, 6401, seconds)
    tcp = TcpTransfer(h1, server, SERVER4, seconds, bitrate="20M", port=6600)
    try:
        up.start()
        down.start()
        tcp.start()
        _at(time.monotonic() + 2.0)
        events = _storm(net, halves)
        restored = events[-1]
        results: tuple[StreamResult, StreamResult] = (up.result(), down.result())
        transfer = tcp.result()
    finally:
        up.stop()
        down.stop()
        tcp.stop()
        isp_blackhole(net["ispA"], False)
    rss_after = rss_mb(controller.process.pid)
    changes = path_changes(controller) - changes_before
    try:
        wait_for(lambda: class_path(controller, "default") == PREFERRED, damping["max_hold_s"] + 30, interval=0.1,
                 what="traffic back on ISP A")
        back_s: float | None = time.monotonic() - restored
        wait_path(net, "ispA")  # and the data plane agrees
    except TimeoutError:
        back_s = None
    outages = [len(r.outages(OUTAGE_MS)) for r in results]
    # When each outage began: after which change of ISP A (down 1, up 1, down 2, ...) and how long after it.
    when = {direction: [_after_event(at, events) for at, gap in r.gaps_between(0.0, math.inf) if gap >= OUTAGE_MS]
            for direction, r in zip(("up", "down"), results, strict=True)}
    figures = {
        "storm_flaps": len(halves) // 2,
        "storm_seconds": round(sum(halves), 1),
        "storm_outages_30ms": max(outages),
        "storm_outages_30ms_up": outages[0],
        "storm_outages_30ms_down": outages[1],
        "storm_lost_up": results[0].lost,
        "storm_lost_down": results[1].lost,
        "storm_longest_gap_ms": max(r.max_gap_ms for r in results),
        "storm_outages_ms_up": results[0].outages(OUTAGE_MS),
        "storm_outages_ms_down": results[1].outages(OUTAGE_MS),
        "storm_outages_after_up": when["up"],
        "storm_outages_after_down": when["down"],
        "storm_path_changes": changes,
        "tcp_survived": transfer.survived,
        "tcp_mbps": transfer.mbps(),
        "back_on_isp_a": back_s is not None,
        "back_on_isp_a_s": None if back_s is None else round(back_s, 1),
        "controller_rss_mb": round(rss_after, 1),
        "controller_rss_growth_mb": round(rss_after - rss_before, 1),
    }
    print(f"storm: {figures['storm_flaps']} flaps in {figures['storm_seconds']} s: outages >= {OUTAGE_MS:g} ms "
          f"up {outages[0]} / down {outages[1]}, lost up {results[0].lost} / down {results[1].lost}, "
          f"longest gap {figures['storm_longest_gap_ms']} ms, {changes} path changes, "
          f"tcp {'survived' if transfer.survived else 'broke: ' + transfer.error}; back on ISP A "
          f"{figures['back_on_isp_a_s']} s after its last restore", flush=True)
    return figures


def _storm(net: ReferenceNetwork, halves: list[float]) -> list[float]:
    """ISP A drops everything during the even halves and forwards during the odd ones, on
    an absolute schedule (no drift); returns when each change was made (the last is the
    final restore)."""
    start = time.monotonic()
    offset = 0.0
    events = []
    for index, half in enumerate(halves):
        _at(start + offset)
        events.append(time.monotonic())  # before the command: the change takes effect during it
        isp_blackhole(net["ispA"], index % 2 == 0)
        offset += half
    _at(start + offset)
    return events


def _after_event(at: float, events: list[float]) -> str:
    """"down 3 +0.09 s": the gap began 0.09 s after ISP A's third failure ("start": before any)."""
    index = bisect.bisect_right(events, at) - 1
    if index < 0:
        return f"start {at - events[0]:+.2f} s"
    return f"{'down' if index % 2 == 0 else 'up'} {index // 2 + 1} {at - events[index]:+.2f} s"


def _bfd_up(net: ReferenceNetwork) -> bool:
    """Does the MSPMB's BFD session to edge1 over ISP A say forwarding (one query)?"""
    node: Any = net["mspmb"]
    return node.vsctl("get", "interface", "edge1-ispA", "bfd_status:forwarding").strip().strip('"') == "true"


def _fail_and_restore(net: ReferenceNetwork, down_s: float) -> tuple[float, float]:
    """ISP A drops everything for down_s seconds: (when it failed, when it was restored)."""
    failed = time.monotonic()
    isp_blackhole(net["ispA"], True)
    _at(failed + down_s)
    isp_blackhole(net["ispA"], False)
    return failed, time.monotonic()


def _at(when: float) -> None:
    """Wait until a scheduled moment of the fault schedule (a schedule, not a condition)."""
    time.sleep(max(0.0, when - time.monotonic()))


def _pair(figures: dict[str, Any], name: str) -> str:
    return f"{figures[f'failover_{name}_ms_up']:.0f} / {figures[f'failover_{name}_ms_down']:.0f}"


if __name__ == "__main__":
    sys.exit(main())
