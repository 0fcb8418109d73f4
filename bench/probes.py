"""Probe benchmark: injected loss against the loss the controller reports, and how fast an
SLA class leaves a degraded ISP.

Loss is injected one way (towards the homenet) on ISP A, so a probe's round trip loses
exactly that share. For each rate the controller's 5 s estimate is read once per window
over several non-overlapping windows; the reported figure is their mean. Then, in several
runs, ISP A starts losing 10 % (twice the class's limit, yet too little to make BFD flap,
so the probes and not BFD move the class) and we time how long until the class "gaming"
(sla, at most 5 % loss) takes ISP B. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench.common import DEFAULT_POLICY, api, class_path, path_info, run_directory, wait_all_paths_healthy
from topologies.controller import wait_for
from topologies.faults import isp_loss
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, wait_reachable
from topologies.scenario import running

WINDOW_S = 5.0  # the controller's estimation window
DEGRADED_PCT = 10
SETTLE_S = 6.5  # window + probe timeout + margin: the old rate has left the window
GAMING = {"name": "gaming", "match": {"protocol": "udp", "dst_ports": ["27000-27100"]},
          "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 3},
          "ingress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 3}}


def measure_loss(controller, net, percent: float, windows: int) -> list[float]:
    isp_loss(net["ispA"], percent, direction="down")
    time.sleep(SETTLE_S)  # a schedule: the estimate must only cover the new loss rate
    readings = []
    for _ in range(windows):
        readings.append(path_info(controller, "ispA")["loss_pct"])
        time.sleep(WINDOW_S)  # the next reading covers a new window
    return readings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,5,20,50")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    table, detections = [], []
    guard = LeakGuard()
    with run_directory("msp-bench-probes-") as run_dir, \
            running(run_dir, guard=guard) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        wait_all_paths_healthy(controller)
        for rate in (float(r) for r in args.rates.split(",")):
            readings = measure_loss(controller, net, rate, args.windows)
            mean = statistics.mean(readings)
            table.append({"injected_pct": rate, "reported_pct": round(mean, 2),
                          "error_pct": round(abs(mean - rate), 2),
                          "window_readings": readings})
            print(f"loss {rate:5.1f} %: controller reports {mean:5.2f} % "
                  f"(windows: {', '.join(f'{r:.1f}' for r in readings)})", flush=True)
        isp_loss(net["ispA"], 0)
        status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy",
                             {"classes": [GAMING], "default": DEFAULT_POLICY})
        assert status == 200, answer
        for index in range(args.runs):
            wait_all_paths_healthy(controller)
            wait_for(lambda: class_path(controller, "gaming") == "ispA@edge1", 30, what="gaming back on ISP A")
            started = time.monotonic()
            isp_loss(net["ispA"], DEGRADED_PCT, direction="down")
            wait_for(lambda: class_path(controller, "gaming") == "ispB@edge1", 30, interval=0.05,
                     what="gaming to leave ISP A")
            detections.append(time.monotonic() - started)
            isp_loss(net["ispA"], 0)
            print(f"run {index + 1}: gaming left the {DEGRADED_PCT} %-lossy ISP A after {detections[-1]:.2f} s",
                  flush=True)
    print(json.dumps({
        "leaked_packets": guard.final_count,
        "runs": len(detections),
        "loss_error_pct_max": max(row["error_pct"] for row in table),
        "detect_s": round(statistics.median(detections), 2),
        "detect_s_max": round(max(detections), 2),
        "loss": [{k: v for k, v in row.items() if k != "window_readings"} for row in table],
        "probe_interval_ms": 50,
        "window_s": WINDOW_S,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
