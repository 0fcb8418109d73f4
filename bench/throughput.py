"""Throughput benchmark: one TCP stream each way between h1 and the server, on three paths.

  msp     the reference network with the controller, ISPs unshaped (the CPU is the limit)
  vxlan   plain OVS VXLAN through the same boxes' ovs-vswitchd, one flow per direction
  routed  kernel routing through the same namespaces, no OVS
(bench/throughput_paths.py builds the last two beside the running network.)

N runs (default 3); in each, every path carries a ~10 s iperf3 stream up (h1 -> server)
then down (MSP and plain VXLAN swap places every other run), while the CPU of the boxes'
processes (/proc/<pid>/stat, per thread for the two boxes on the path), the machine's CPU
and the boxes' userspace datapaths (pmd-stats, megaflows) are read. Prints one line per
stream, medians and what limits throughput, then one JSON object (last line).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bench import proc_cpu
from bench.common import run_directory
from bench.proc_cpu import USER
from bench.throughput_paths import Endpoints, RoutedPath, VxlanPath, check_free
from bench.throughput_report import (
    DIRECTIONS,
    PATHS,
    UPCALLS,
    StreamFigures,
    busiest,
    cpu_medians,
    datapath_medians,
    direction_mbps,
    extra_cost,
    limit_text,
    main_thread,
    summary,
)
from bench.throughput_stream import dump_writer, run_stream
from topologies.leak_guard import LeakGuard
from topologies.measure import H1_4, SERVER4, wait_reachable
from topologies.plan import OVERLAY_MTU, UNDERLAY_MTU
from topologies.scenario import running, wait_path

PORT_BASE = 5401


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each stream")
    parser.add_argument("--isp", default="ispA", help="the ISP every path crosses (the MSP's first in order)")
    parser.add_argument("--dump-dir", help="write each stream's megaflow listings (dpctl/dump-flows) here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
    guard = LeakGuard()
    streams: list[StreamFigures] = []
    with run_directory("msp-bench-") as run_dir, \
            running(run_dir, isp_rate_mbit=0, guard=guard) as (net, controller):
        edge = net.plan.edge.name
        wait_reachable(net["h1"], SERVER4, timeout=60)
        wait_path(net, args.isp)
        paths: dict[str, Endpoints] = {"msp": Endpoints("msp", "h1", H1_4, "server", SERVER4)}
        builders: list[VxlanPath | RoutedPath] = [VxlanPath(net, args.isp, edge),
                    RoutedPath(net, ("h1", net.plan.mspmb, args.isp, "inet", edge, "server"))]
        check_free(net, {node for builder in builders for node in builder.nodes})
        try:
            for builder in builders:
                builder.create()
                paths[builder.endpoints.path] = builder.endpoints
            watched = {f"{box} ovs-vswitchd": box_obj.ovs_pids()["ovs-vswitchd"]
                       for box, box_obj in net.boxes.items()}
            assert controller.process is not None
            watched["controller"] = controller.process.pid
            watched.update(proc_cpu.kernel_threads("ksoftirqd"))
            threads_of = {f"{box} ovs-vswitchd": watched[f"{box} ovs-vswitchd"] for box in (net.plan.mspmb, edge)}
            port = PORT_BASE
            for run in range(1, args.runs + 1):
                for path in path_order(run):
                    if path == "msp":
                        wait_path(net, args.isp)  # back on the ISP under test if BFD flapped
                    ends = paths[path]
                    for direction in DIRECTIONS:
                        sender, source, receiver, destination = (
                            (ends.client, ends.client_ip, ends.server, ends.server_ip) if direction == "up"
                            else (ends.server, ends.server_ip, ends.client, ends.client_ip))
                        figures = run_stream(
                            net, run, path, direction, sender, source, receiver, destination, port, args.seconds,
                            watched, threads_of, boxes=() if path == "routed" else (net.plan.mspmb, edge),
                            dump=dump_writer(args.dump_dir, f"run{run}-{path}-{direction}"))
                        port += 1
                        streams.append(figures)
                        print(stream_line(run, figures), flush=True)
        finally:
            remove_all(builders)
    cores = os.cpu_count() or 1
    limit = limit_text(streams, OVERLAY_MTU, UNDERLAY_MTU, cores)
    extra: dict[str, Any] = {"isp": args.isp, "isp_rate_mbit": 0, "overlay_mtu": OVERLAY_MTU,
                             "underlay_mtu": UNDERLAY_MTU, "cores": cores,
                             "msp_share_on_isp": isp_share(streams, "msp", args.isp),
                             "msp_megaflows": first_megaflows(streams, "msp"),
                             "vxlan_megaflows": first_megaflows(streams, "vxlan")}
    mtu = {"msp": OVERLAY_MTU, "vxlan": OVERLAY_MTU, "routed": UNDERLAY_MTU}
    result = summary(streams, args.runs, args.seconds, guard.final_count, limit, mtu, extra)
    for line in medians_lines(streams):
        print(line)
    for direction in DIRECTIONS:
        rows = extra_cost(streams, direction)
        print(f"MSP vs plain VXLAN {direction}, CPU per Gbit/s (% of a core): "
              + (", ".join(f"{label} {msp:.0f} vs {vxlan:.0f}" for label, msp, vxlan in rows) or "nowhere more"))
    print(f"MSP / plain VXLAN: {result['ratio_msp_vxlan']} (up {result['ratio_msp_vxlan_up']}, "
          f"down {result['ratio_msp_vxlan_down']}; run by run {result['ratio_msp_vxlan_paired']}); "
          f"target 0.9 {'met' if result['meets_ratio_target'] else 'MISSED'}; "
          f"1 Gbit/s {'met' if result['meets_gbit_target'] else 'not reached'}")
    print(f"limit: {limit}")
    print(json.dumps(result))
    return 0


def path_order(run: int) -> tuple[str, ...]:
    """MSP then plain VXLAN in odd runs, the other way round in even ones, so that neither
    always follows the routed streams or always meets a background load first."""
    first = ("msp", "vxlan") if run % 2 else ("vxlan", "msp")
    return (*first, *(p for p in PATHS if p not in first))


def remove_all(builders: list[VxlanPath | RoutedPath]) -> None:
    """remove() every comparison path, even when one fails; then raise the first error."""
    errors = []
    for builder in reversed(builders):
        try:
            builder.remove()
        except Exception as err:  # report after trying the others
            errors.append(err)
    if errors:
        raise errors[0]


def stream_line(run: int, s: StreamFigures) -> str:
    top = ", ".join(f"{label} {value:.0f}%" for label, value in busiest(s.cpu, 4))
    boxes = "; ".join(f"{box} {st.get('kpps', 0):.0f} kpps, main thread "
                      f"{10 * s.cpu.get(main_thread(box), 0) / max(st.get('kpps', 0), 1e-9):.1f} us/pkt "
                      f"({10 * s.cpu.get(main_thread(box) + USER, 0) / max(st.get('kpps', 0), 1e-9):.1f} in user "
                      f"space), {st.get(UPCALLS, 0):.0f} upcalls" for box, st in s.datapath.items())
    others = ", ".join(f"{label} {value:.0f}%" for label, value in s.busiest_others)
    return (f"run {run} {s.path:6} {s.direction:4}: {s.mbps:7.1f} Mbit/s, {s.retransmits} retransmits, "
            f"BFD flaps {s.bfd_flaps}; machine {s.cpu.get(proc_cpu.MACHINE, 0):.0f}% CPU: {top}"
            + (f"; {boxes}" if boxes else "") + (f"; others: {others}" if others else ""))


def medians_lines(streams: list[StreamFigures]) -> list[str]:
    lines = []
    for path in PATHS:
        for direction in DIRECTIONS:
            cpu = cpu_medians(streams, path, direction)
            top = ", ".join(f"{label} {value:.0f}%" for label, value in busiest(cpu))
            dp = "; ".join(f"{box}: " + ", ".join(f"{k} {v}" for k, v in figures.items())
                           for box, figures in datapath_medians(streams, path, direction).items())
            lines.append(f"median {path:6} {direction:4}: {direction_mbps(streams, path, direction):7.1f} Mbit/s; "
                         f"machine {cpu.get(proc_cpu.MACHINE, 0):.0f}% CPU; {top}" + (f"; {dp}" if dp else ""))
    return lines


def isp_share(streams: list[StreamFigures], path: str, isp: str) -> float | None:
    """Share of the bytes the ISPs forwarded during a path's streams that crossed `isp`."""
    total = sum(sum(s.isp_bytes.values()) for s in streams if s.path == path)
    ours = sum(s.isp_bytes.get(isp, 0) for s in streams if s.path == path)
    return round(ours / total, 3) if total else None


def first_megaflows(streams: list[StreamFigures], path: str) -> dict[str, Any]:
    """The megaflow summaries of the first stream of a path in each direction."""
    out = {}
    for direction in DIRECTIONS:
        first = next((s for s in streams if s.path == path and s.direction == direction), None)
        if first is not None:
            out[direction] = dict(first.megaflows)
    return out


if __name__ == "__main__":
    sys.exit(main())
