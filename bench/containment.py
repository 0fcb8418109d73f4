"""Containment benchmark: start and stop the reference scenario N times under the leak guard.

Each run waits for the controller's BGP sessions to be established (the traffic that once
leaked at teardown), then tears down. With --network-first the network is stopped while the
controller still runs and the controller is given --linger seconds to try its neighbours
again (the order that leaked before the controller had a namespace of its own): containment
must hold by construction, not by stop order. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from bench.common import api
from topologies import control_ns
from topologies.controller import Controller, controller_address, wait_for
from topologies.leak_guard import LeakGuard
from topologies.network import ReferenceNetwork
from topologies.scenario import REFERENCE_CONFIG, running


def sessions_established(controller: Controller) -> bool:
    status, health = api(controller, "GET", "/api/v1/health")
    sessions = health.get("bgp", {}) if status == 200 else {}
    return bool(sessions) and all(state == "established" for state in sessions.values())


def network_first(run_dir: str, linger_s: float, guard: LeakGuard) -> None:
    with guard:
        created = control_ns.ensure(controller_address(str(REFERENCE_CONFIG)))
        controller = Controller(REFERENCE_CONFIG, os.path.join(run_dir, "controller.log"))
        network = ReferenceNetwork(str(REFERENCE_CONFIG), run_dir=run_dir)
        try:
            controller.start()
            network.start()
            wait_for(lambda: sessions_established(controller), 60, interval=0.5, what="BGP sessions")
            network.stop()  # the wrong order, on purpose: the controller loses its neighbours
            time.sleep(linger_s)  # the controller retries its neighbours meanwhile (measured, not waited on)
        finally:
            controller.stop()
            network.stop()
            if created:
                control_ns.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--network-first", action="store_true",
                        help="stop the network before the controller, then let the controller linger")
    parser.add_argument("--linger", type=float, default=10.0, help="seconds the controller outlives the network")
    args = parser.parse_args()
    counts = []
    for index in range(args.runs):
        guard = LeakGuard()
        with tempfile.TemporaryDirectory(prefix="msp-bench-containment-") as run_dir:
            started = time.monotonic()
            if args.network_first:
                network_first(run_dir, args.linger, guard)
            else:
                with running(run_dir, guard=guard) as (_net, controller):
                    wait_for(lambda c=controller: sessions_established(c), 60, interval=0.5, what="BGP sessions")
        counts.append(guard.final_count)
        print(f"run {index + 1}: {guard.final_count} packets tried to leave the machine "
              f"({time.monotonic() - started:.1f} s)", flush=True)
    print(json.dumps({"runs": args.runs, "network_first": args.network_first,
                      "leaked_packets": sum(c or 0 for c in counts), "leaked_max": max(counts, default=0)}))
    return 0 if all(c == 0 for c in counts) else 1


if __name__ == "__main__":
    sys.exit(main())
