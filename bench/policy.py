"""Policy benchmark: from a REST PUT that moves a class to another ISP until its packets
actually take that ISP, measured in the data plane (the ISP routers' packet counters).

A 1000 packets/s UDP stream of class "voice" runs from h1 to the server; each run PUTs a
policy sending voice out by the other ISP and polls that ISP's counter of voice packets
until it moves. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench.common import DEFAULT_POLICY, api, run_directory, wait_all_paths_healthy
from topologies.controller import wait_for
from topologies.faults import inner_udp_counts, watch_inner_udp_port
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, UdpStream, wait_reachable
from topologies.scenario import running

VOICE_PORT = 20000


def policy(first: str, second: str) -> dict:
    order = {"mode": "failover", "order": [first, second]}
    return {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
                         "egress": order, "ingress": order}], "default": DEFAULT_POLICY}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    applied, confirmed, polls = [], [], []
    guard = LeakGuard()
    with run_directory("msp-bench-policy-") as run_dir, \
            running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        wait_all_paths_healthy(controller)
        for isp in ("ispA", "ispB"):
            watch_inner_udp_port(net[isp], VOICE_PORT)
        api(controller, "PUT", "/api/v1/homenets/home1/policy", policy("ispA", "ispB"))
        stream = UdpStream(net["h1"], net["server"], SERVER4, VOICE_PORT, seconds=3.0 * args.runs + 5)
        stream.start()
        try:
            flowing = inner_udp_counts(net["ispA"], VOICE_PORT)["up"]
            wait_for(lambda: inner_udp_counts(net["ispA"], VOICE_PORT)["up"] > flowing + 100, 10,
                     what="the voice stream to flow over ISP A")
            current = "ispA"
            for index in range(args.runs):
                target = "ispB" if current == "ispA" else "ispA"
                baseline = inner_udp_counts(net[target], VOICE_PORT)["up"]
                started = time.monotonic()
                status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy", policy(target, current))
                assert status == 200 and answer["applied"], answer
                count = 0
                while inner_udp_counts(net[target], VOICE_PORT)["up"] <= baseline:
                    count += 1
                    if time.monotonic() - started > 10:
                        raise TimeoutError(f"voice never reached {target}")
                elapsed = (time.monotonic() - started) * 1000
                applied.append(elapsed)
                confirmed.append(answer["applied_ms"])
                polls.append(count)
                print(f"run {index + 1}: voice to {target} in {elapsed:.1f} ms "
                      f"(PUT answered after {answer['applied_ms']:.1f} ms, {count} counter polls)", flush=True)
                current = target
                time.sleep(1.0)  # let the stream settle on its new path before the next move
        finally:
            stream.stop()
    print(json.dumps({
        "leaked_packets": guard.final_count,
        "runs": len(applied),
        "policy_apply_ms": round(statistics.median(applied), 2),
        "policy_apply_ms_max": round(max(applied), 2),
        "put_confirmed_ms": round(statistics.median(confirmed), 2),
        "stream_pps": 1000,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
