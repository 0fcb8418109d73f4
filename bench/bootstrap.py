"""Zero configuration, measured (topologies/blank_box.py): a blank MSPMB boots, leases its
ISP addresses by DHCP, dials the MSP's OVSDB manager over an ISP and receives its tunnels;
the controller (ryu-manager, OpenFlow over TLS) programs it and the edge, and the host
behind it, powered on with the box, gets its address by DHCP and reaches the server.

  time_to_first_packet_s      box start -> the first ping of the host (DHCP-addressed) answered
                              by the server
  time_to_multihomed_s        box start -> both ISPs' tunnels up: BFD up at the box, and both
                              paths live at both ends for the controller (REST)
  renumber_outage_ms          ISP A renumbers the box (NAK at renewal, new address): the new
                              lease in the box's OVSDB -> the first packet of a 500 packets/s
                              probe into ISP A's tunnel that the edge lets through to the server
                              from the new address (the controller moved the edge's flows)
  renumber_edge_follow_ms     the new lease -> the edge's flows accept the tunnel from the new
                              address (the manager's report, the controller's flows)
  renumber_bfd_up_ms          the new lease -> BFD up at the box and the path live again (BFD
                              sends once a second while a session is down, RFC 5880)
  renumber_dhcp_gap_ms        the renewal -> the new lease (the DHCP client's own part: busybox
                              udhcpc waits 3 s after a NAK before it asks again)
  other_isp_lost_packets      packets of the same probe into ISP B's tunnel lost meanwhile
                              (should be 0), and other_isp_bfd_flaps, its BFD state changes
  control_channel_failover_s  the ISP carrying the OVSDB channel drops everything -> the box
                              is connected to the manager again, over the other ISP

Medians of --runs runs, under the leak guard; the last line printed is one JSON object.
    flock /tmp/msp-integration.lock .venv/bin/python -m bench.bootstrap --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from topologies.blank_box import BOX, BlankBoxNetwork
from topologies.ovsbox import wait_for


def flap_count(bb: BlankBoxNetwork, node: str, port: str) -> int:
    out = bb[node].vsctl("get", "interface", port, "bfd_status:flap_count", timeout=2)
    return int(out.strip().strip('"'))


def lost(arrivals: list[tuple[int, float]], start: float, end: float) -> int:
    """Sequence numbers missing between the first and the last arrival within [start, end]."""
    seqs = sorted(seq for seq, t in arrivals if start <= t <= end)
    return 0 if not seqs else seqs[-1] - seqs[0] + 1 - len(set(seqs))


def renumber(bb: BlankBoxNetwork) -> dict[str, float]:
    """ISP A renumbers the box while probes run into both ISPs' tunnels."""
    flaps_b = flap_count(bb, BOX, "edge1-ispB")
    new = bb.address("ispA", 101)
    bb.dhcp["ispA"].renumber(bb.uplink_mac("ispA"), new)
    bb.start_probes()
    wait_for(lambda: len(bb.probe_arrivals("ispA")) > 100 and len(bb.probe_arrivals("ispB")) > 100, 10,
             what="the probes reaching the server over both ISPs")
    window_start = time.time()
    renewed = time.monotonic()
    bb.renew("ispA")
    wait_for(lambda: new in bb.lease("ispA"), 10, interval=0.005, what="ISP A's new lease")
    leased, leased_wall = time.monotonic(), time.time()
    wait_for(lambda: bb.edge_address("ispA") == new, 10, interval=0.005, what="the edge's flows to follow")
    edge_follow = (time.monotonic() - leased) * 1000
    wait_for(lambda: any(t > leased_wall for _, t in bb.probe_arrivals("ispA")), 10, interval=0.01,
             what="the probe on ISP A reaching the server from the new address")
    first_after = min(t for _, t in bb.probe_arrivals("ispA") if t > leased_wall)
    wait_for(lambda: bb.bfd_up(BOX, "edge1-ispA") and bb.paths_live().get("ispA"), 10, interval=0.01,
             what="ISP A's tunnel up again (BFD, and live for the controller)")
    bfd_up = (time.monotonic() - leased) * 1000
    window_end = time.time()
    wait_for(lambda: any(t > window_end for _, t in bb.probe_arrivals("ispB")), 5, interval=0.01,
             what="ISP B's probe past the window")
    other_lost = lost(bb.probe_arrivals("ispB"), window_start, window_end)
    bb.stop_probes()
    assert bb.edge_address("ispA") == new, bb.edge_address("ispA")
    return {"renumber_outage_ms": (first_after - leased_wall) * 1000, "renumber_edge_follow_ms": edge_follow,
            "renumber_bfd_up_ms": bfd_up,
            "renumber_dhcp_gap_ms": (leased - renewed) * 1000, "other_isp_lost_packets": other_lost,
            "other_isp_bfd_flaps": flap_count(bb, BOX, "edge1-ispB") - flaps_b}


def control_failover(bb: BlankBoxNetwork, run_dir: str) -> float:
    wait_for(lambda: bb.agent_status().get("control_uplink") and bb.manager_connected(), 10,
             what="the control channel")
    isp = bb.agent_status()["control_uplink"].removeprefix("br-")
    other = "ispB" if isp == "ispA" else "ispA"
    log = os.path.join(run_dir, "manager.log")
    mark = f"connected from {bb.lease(other).strip().strip(chr(34)).split('/')[0]}:"  # its address now
    before = open(log).read().count(mark)
    t = time.monotonic()
    bb.isp_blackhole(isp)
    wait_for(lambda: open(log).read().count(mark) > before, 20, interval=0.02,
             what=f"the box to reach the manager over {other}")
    failover = time.monotonic() - t
    bb.isp_blackhole(isp, on=False)
    return failover


def one_run(run_dir: str) -> dict[str, float]:
    with BlankBoxNetwork(run_dir) as bb:
        started = bb.start_box()
        first = bb.wait_host_reaches_server(30) - started
        multihomed = bb.wait_multihomed(30) - started
        result = {"time_to_first_packet_s": first, "time_to_multihomed_s": multihomed}
        result.update(renumber(bb))
        result["control_channel_failover_s"] = control_failover(bb, run_dir)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.bootstrap: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    from topologies.leak_guard import LeakGuard

    results = []
    with LeakGuard() as guard:
        for n in range(args.runs):
            run_dir = tempfile.mkdtemp(prefix="msp-bootstrap-")
            result = one_run(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)  # kept (and named in the traceback) on failure
            print(f"run {n + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)
            results.append(result)
    summary: dict[str, float | int] = {key: round(statistics.median(r[key] for r in results), 3)
                                       for key in results[0]}
    summary["runs"] = args.runs
    summary["leaked_packets"] = guard.final_count
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
