"""QoS benchmark: does a voice call keep its latency while bulk TCP fills both directions?

The ISPs are emulated as homes know them (default 100 Mbit/s down, 20 Mbit/s up, 250 ms
FIFO buffers). A 50 packets/s voice-like echo (bench/voiceping.py, class "voice") runs
from h1 to the server, each packet crossing both directions, in three phases per run:
1. idle: no other traffic (QoS on);
2. QoS on: bulk TCP (iperf3, one stream each way) saturates both directions, the policy
   marks voice EF (realtime) and the boxes shape just below the ISP's rates
   (msp_controller/dataplane/shaping.py);
3. QoS off: the same load, no marking, no shaping: the ISP's buffers fill.
Prints one line per phase, then one JSON object (last line), medians over the runs.
bulk_share_*: iperf3's goodput over the ISP's rate (headers and the tunnel's 50 bytes
per packet cost about 8 % of the link at 1450-byte packets; link_share_* counts frames
on the ISP's link instead).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from bench.common import DEFAULT_POLICY, api, run_directory, wait_all_paths_healthy
from msp_controller.model.policy import parse_policy
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, TcpTransfer, wait_reachable
from topologies.ovsbox import run
from topologies.scenario import bfd_flap_counts, running, wait_all_bfd_up
from topologies.shaping import VoicePing, apply_shaping, clear_shaping, isp_links

VOICE_PORT = 20000
BULK_PORT = 5301
POLICY_PATH = "/api/v1/homenets/home1/policy"


def qos_policy(down_mbit: float, up_mbit: float) -> dict[str, Any]:
    rates = {"down_kbps": int(down_mbit * 1000), "up_kbps": int(up_mbit * 1000)}
    return {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": [VOICE_PORT]},
                         "egress": DEFAULT_POLICY["egress"], "ingress": DEFAULT_POLICY["ingress"],
                         "qos": {"dscp": 46, "priority": "realtime"}}],
            "default": {**DEFAULT_POLICY, "qos": {"dscp": 0, "priority": 10}},
            "rates": {"ispA": rates, "ispB": rates}}


def plain_policy() -> dict[str, Any]:
    return {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": [VOICE_PORT]},
                         "egress": DEFAULT_POLICY["egress"], "ingress": DEFAULT_POLICY["ingress"]}],
            "default": DEFAULT_POLICY}


def link_bytes(node: Any, intf: str) -> int:
    """Bytes sent so far by the ISP's HTB class on one interface (frames, as the link counts)."""
    text = run(["tc", "-s", "class", "show", "dev", intf], node)
    for line in text.splitlines():
        if line.strip().startswith("Sent "):
            return int(line.split()[1])
    return 0


def phase(net: Any, seconds: float, load: bool, warmup: float) -> dict[str, Any]:
    """Voice for `seconds` (after `warmup` of load, if any); bulk both ways if load."""
    isp = net.plan.isps[0]
    bulk = TcpTransfer(net["h1"], net["server"], SERVER4, seconds + warmup + 1, port=BULK_PORT, bidir=True)
    voice = VoicePing(net["h1"], net["server"], SERVER4, VOICE_PORT, seconds)
    flaps_before = sum(bfd_flap_counts(net).values())
    try:
        if load:
            bulk.start()
            time.sleep(warmup)  # a schedule: let TCP fill whatever queue it fills
        down0, up0, t0 = link_bytes(net[isp.name], isp.customer_intf), link_bytes(net[isp.name], isp.inet_intf), \
            time.monotonic()
        voice.start()
        result = voice.result()
        down1, up1, t1 = link_bytes(net[isp.name], isp.customer_intf), link_bytes(net[isp.name], isp.inet_intf), \
            time.monotonic()
        tcp = bulk.result() if load else None
    finally:
        voice.stop()
        bulk.stop()
    return {
        "voice": result,
        "up_mbps": tcp.mbps() if tcp else 0.0,
        "down_mbps": tcp.mbps(reverse=True) if tcp else 0.0,
        "link_down_mbps": (down1 - down0) * 8 / (t1 - t0) / 1e6,
        "link_up_mbps": (up1 - up0) * 8 / (t1 - t0) / 1e6,
        "bfd_flaps": sum(bfd_flap_counts(net).values()) - flaps_before,
    }


def describe(name: str, found: dict[str, Any], idle_ms: float | None = None) -> str:
    voice = found["voice"]
    text = (f"{name}: voice RTT p50 {voice.percentile(50):.2f} ms, p99 {voice.percentile(99):.2f} ms, "
            f"loss {voice.loss_pct:.2f} % ({voice.sent - voice.received}/{voice.sent})")
    if found["up_mbps"] or found["down_mbps"]:
        text += (f"; bulk down {found['down_mbps']:.1f} Mbit/s, up {found['up_mbps']:.1f} Mbit/s"
                 f" (ISP link {found['link_down_mbps']:.1f} / {found['link_up_mbps']:.1f})")
    return text + f"; BFD state changes {found['bfd_flaps']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="voice measured per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="bulk before voice starts")
    parser.add_argument("--down-mbit", type=float, default=100.0)
    parser.add_argument("--up-mbit", type=float, default=20.0)
    parser.add_argument("--buffer-ms", type=float, default=250.0)
    args = parser.parse_args()
    guard = LeakGuard()
    rows: list[dict[str, Any]] = []
    with run_directory("msp-bench-qos-") as run_dir, \
            running(run_dir, isp_rate_mbit=0, guard=guard) as (net, controller):
        isp_links(net, args.down_mbit, args.up_mbit, args.buffer_ms)
        wait_reachable(net["h1"], SERVER4, timeout=60)
        wait_all_paths_healthy(controller)
        on = qos_policy(args.down_mbit, args.up_mbit)
        for index in range(args.runs):
            status, answer = api(controller, "PUT", POLICY_PATH, on)
            assert status == 200, answer
            apply_shaping(net, parse_policy(on, net.plan.homenet))
            wait_all_bfd_up(net)
            idle = phase(net, args.seconds, load=False, warmup=0)
            print(f"run {index + 1} " + describe("idle", idle), flush=True)
            loaded_on = phase(net, args.seconds, load=True, warmup=args.warmup)
            print(f"run {index + 1} " + describe("QoS on", loaded_on), flush=True)
            status, answer = api(controller, "PUT", POLICY_PATH, plain_policy())
            assert status == 200, answer
            clear_shaping(net)
            loaded_off = phase(net, args.seconds, load=True, warmup=args.warmup)
            print(f"run {index + 1} " + describe("QoS off", loaded_off), flush=True)
            rows.append({"idle": idle, "on": loaded_on, "off": loaded_off})

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    idle_p50 = median([r["idle"]["voice"].percentile(50) for r in rows])
    p99_on = median([r["on"]["voice"].percentile(99) for r in rows])
    print(json.dumps({
        "runs": len(rows),
        "isp_down_mbit": args.down_mbit, "isp_up_mbit": args.up_mbit, "isp_buffer_ms": args.buffer_ms,
        "voice_rtt_idle_ms": idle_p50,
        "voice_rtt_idle_p99_ms": median([r["idle"]["voice"].percentile(99) for r in rows]),
        "voice_rtt_p50_ms_on": median([r["on"]["voice"].percentile(50) for r in rows]),
        "voice_rtt_p99_ms_on": p99_on,
        "voice_rtt_p50_ms_off": median([r["off"]["voice"].percentile(50) for r in rows]),
        "voice_rtt_p99_ms_off": median([r["off"]["voice"].percentile(99) for r in rows]),
        "voice_inflation_p99_ms_on": round(p99_on - idle_p50, 3),
        "voice_loss_pct_on": median([r["on"]["voice"].loss_pct for r in rows]),
        "voice_loss_pct_off": median([r["off"]["voice"].loss_pct for r in rows]),
        "bulk_share_down_on": median([r["on"]["down_mbps"] / args.down_mbit for r in rows]),
        "bulk_share_up_on": median([r["on"]["up_mbps"] / args.up_mbit for r in rows]),
        "bulk_share_down_off": median([r["off"]["down_mbps"] / args.down_mbit for r in rows]),
        "bulk_share_up_off": median([r["off"]["up_mbps"] / args.up_mbit for r in rows]),
        "link_share_down_on": median([r["on"]["link_down_mbps"] / args.down_mbit for r in rows]),
        "link_share_up_on": median([r["on"]["link_up_mbps"] / args.up_mbit for r in rows]),
        "bfd_flaps_on": sum(r["on"]["bfd_flaps"] for r in rows),
        "bfd_flaps_off": sum(r["off"]["bfd_flaps"] for r in rows),
        "leaked_packets": guard.final_count,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
