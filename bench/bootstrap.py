"""Zero configuration, measured (topologies/blank_box.py): a blank MSPMB boots, leases its
ISP addresses by DHCP, dials the MSP's OVSDB manager over an ISP and receives its tunnels.

  time_to_first_packet_s      box start -> first tunnel carrying packets both ways (BFD up)
  time_to_multihomed_s        box start -> both ISPs' tunnels up (BFD, both ends)
  renumber_outage_ms          ISP A renumbers the box (NAK at renewal, new address): the new
                              lease in the box's OVSDB -> the edge's tunnel ends at the new
                              address and takes the box's packets again
  renumber_bfd_up_ms          the new lease -> BFD up at both ends (BFD sends once a second
                              while a session is down, RFC 5880: up to a second more)
  renumber_dhcp_gap_ms        the renewal -> the new lease (the DHCP client's own part: busybox
                              udhcpc waits 3 s after a NAK before it asks again)
  other_isp_bfd_flaps         BFD state changes of ISP B's tunnel meanwhile (should be 0)
  control_channel_failover_s  the ISP carrying the OVSDB channel drops everything -> the box
                              is connected to the manager again, over the other ISP

Medians of --runs runs; the last line printed is one JSON object.
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

from topologies.blank_box import BOX, EDGE, BlankBoxNetwork
from topologies.ovsbox import wait_for


def flap_count(bb: BlankBoxNetwork, node: str, port: str) -> int:
    out = bb[node].vsctl("get", "interface", port, "bfd_status:flap_count", timeout=2)
    return int(out.strip().strip('"'))


def one_run(run_dir: str) -> dict[str, float]:
    with BlankBoxNetwork(run_dir) as bb:
        started = bb.start_box()
        wait_for(lambda: any(bb.box_tunnels_up().values()), 30, interval=0.02, what="a first tunnel up")
        first = time.monotonic() - started
        wait_for(lambda: all(bb.box_tunnels_up().values()) and all(
            bb.bfd_up(EDGE, f"hn1-{isp}") for isp in ("ispA", "ispB")), 30, interval=0.02, what="multihomed")
        multihomed = time.monotonic() - started

        flaps_b = flap_count(bb, BOX, "edge1-ispB")
        new = bb.address("ispA", 101)
        bb.dhcp["ispA"].renumber(bb.uplink_mac("ispA"), new)
        probe = bb.start_probe("ispA")
        before = bb.edge_rx_packets("ispA")
        wait_for(lambda: bb.edge_rx_packets("ispA") > before + 100, 5, what="the probe reaching the edge over ISP A")
        t = time.monotonic()
        bb.renew("ispA")
        wait_for(lambda: new in bb[BOX].vsctl("--if-exists", "get", "open_vswitch", ".",
                                              "external_ids:msp-lease-br-ispA", timeout=2),
                 10, interval=0.005, what="ISP A's new lease")
        leased = time.monotonic()
        rx = bb.edge_rx_packets("ispA")
        wait_for(lambda: bb.edge_remote("ispA") == new and bb.edge_rx_packets("ispA") > rx, 10, interval=0.005,
                 what="the edge's tunnel on ISP A to take the box's packets at the new address")
        renumber = (time.monotonic() - leased) * 1000
        wait_for(lambda: bb.bfd_up(BOX, "edge1-ispA") and bb.bfd_up(EDGE, "hn1-ispA"), 10, interval=0.01,
                 what="BFD up again on ISP A")
        bb.stop_probe(probe)
        bfd_up = (time.monotonic() - leased) * 1000
        dhcp_gap = (leased - t) * 1000
        other_flaps = flap_count(bb, BOX, "edge1-ispB") - flaps_b

        wait_for(lambda: bb.agent_status().get("control_uplink") and bb.manager_connected(), 10,
                 what="the control channel")
        control = bb.agent_status()["control_uplink"]
        isp = control.removeprefix("br-")
        other = "ispB" if isp == "ispA" else "ispA"
        log = os.path.join(run_dir, "manager.log")
        before = open(log).read().count(f"connected from {bb.address(other, 100)}")
        t = time.monotonic()
        bb.isp_blackhole(isp)
        wait_for(lambda: open(log).read().count(f"connected from {bb.address(other, 100)}") > before,
                 20, interval=0.02, what=f"the box to reach the manager over {other}")
        failover = time.monotonic() - t
        bb.isp_blackhole(isp, on=False)
        return {"time_to_first_packet_s": first, "time_to_multihomed_s": multihomed,
                "renumber_outage_ms": renumber, "renumber_bfd_up_ms": bfd_up, "renumber_dhcp_gap_ms": dhcp_gap,
                "other_isp_bfd_flaps": other_flaps, "control_channel_failover_s": failover}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.bootstrap: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    results = []
    for n in range(args.runs):
        run_dir = tempfile.mkdtemp(prefix="msp-bootstrap-")
        result = one_run(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)  # kept (and named in the traceback) on failure
        print(f"run {n + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)
        results.append(result)
    summary = {key: round(statistics.median(r[key] for r in results), 3) for key in results[0]}
    summary["runs"] = args.runs
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
