"""QoS benchmark: does a voice call keep its latency while bulk TCP fills both directions?

The ISPs are emulated as homes know them (default 100 Mbit/s down, 20 Mbit/s up, 250 ms
FIFO buffers). A 50 packets/s voice-like echo (bench/voiceping.py, class "voice") runs
from h1 to the server, each packet crossing both directions, in three phases per run:
1. idle: no other traffic (QoS on);
2. QoS on: bulk TCP (iperf3, one stream each way) saturates both directions, the policy
   marks voice EF (realtime) and the boxes shape just below the ISP's rates
   (msp_controller/dataplane/shaping.py);
3. QoS off: the same load, no marking, no shaping: the ISP's buffers fill.
Prints one line per phase, then one JSON object (last line), medians over the runs. Every
rate is taken over the voice's window, while the transfer runs.
- voice_rtt_*: the network's round trip (bench/voiceping.py: kernel receive stamps, the
  echo's hold taken off, as TWAMP measures); voice_app_rtt_* as the pinging process read it.
- bulk_share_*: iperf3's goodput over the ISP's rate. A 1514-byte frame carries 1398 bytes
  of TCP payload through the tunnel, so goodput is at most bulk_goodput_ceiling_down of the
  rate when shaped to SHAPE_FRACTION of it; upstream, the download's ACKs also take their
  share of the link.
- bulk_wire_share_*: bulk's frames on the ISP's link (the shapers' classes but the
  real-time and control ones; upstream this includes the download's ACKs) over its rate.
- link_share_*: every frame on the ISP's link (its own counters) over its rate.
- default_rtt_*: plain pings (20/s) beside the voice, in the default class with the bulk:
  what the shapers' own queues cost everything that is not real-time.
- cpu_busy_pct_*, cpu_steal_pct_*: the machine's CPUs over the voice's window, and the share
  of them the hypervisor gave to other VMs (steal): a noisy neighbour shows there.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import proc_cpu
from bench.common import DEFAULT_POLICY, api, run_directory, wait_all_paths_healthy
from msp_controller.dataplane.shaping import MTU_BYTES, SHAPE_FRACTION
from msp_controller.model.policy import Policy, parse_policy
from topologies.edge_shapers import EdgeShapers
from topologies.leak_guard import LeakGuard
from topologies.measure import SERVER4, TcpTransfer, wait_reachable
from topologies.ovsbox import run
from topologies.scenario import bfd_flap_counts, running, wait_all_bfd_up
from topologies.shaping import PingSeries, VoicePing, apply_shaping, bulk_wire_bytes, clear_shaping, isp_links

VOICE_PORT = 20000
BULK_PORT = 5301
POLICY_PATH = "/api/v1/homenets/home1/policy"
TRANSFER_MARGIN_S = 8.0  # the transfer outlasts the voice's window (its start and 2 s of late replies)
# TCP payload per underlay frame: 1514-byte frames carry a 1450-byte inner packet (VXLAN's 50
# bytes and the outer Ethernet header), less 52 bytes of inner IP and TCP (with timestamps).
GOODPUT_PER_FRAME = (MTU_BYTES - 14 - 50 - 52) / MTU_BYTES


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


def phase(net: Any, seconds: float, load: bool, warmup: float, policy: Policy | None = None) -> dict[str, Any]:
    """Voice for `seconds` (after `warmup` of load, if any); bulk both ways if load. Every
    rate is measured over the voice's window, inside the transfer: `policy` (the shaped one)
    names the shapers' classes whose bytes are bulk's."""
    isp = net.plan.isps[0]
    bulk = TcpTransfer(net["h1"], net["server"], SERVER4, seconds + warmup + TRANSFER_MARGIN_S, port=BULK_PORT,
                       bidir=True)
    voice = VoicePing(net["h1"], net["server"], SERVER4, VOICE_PORT, seconds)
    web = PingSeries(net["h1"], SERVER4, seconds)
    flaps_before = sum(bfd_flap_counts(net).values())

    def counters() -> tuple[float, int, int, tuple[int, int]]:
        node = net[isp.name]
        wire = bulk_wire_bytes(net, policy, isp.name) if policy is not None else (0, 0)
        return time.monotonic(), link_bytes(node, isp.customer_intf), link_bytes(node, isp.inet_intf), wire

    try:
        started = time.monotonic()
        if load:
            bulk.start()
            started = time.monotonic()
            time.sleep(warmup)  # a schedule: let TCP fill whatever queue it fills
        t0, down0, up0, wire0 = counters()
        cpu0 = proc_cpu.take({})
        voice.start()
        web.start()
        result = voice.result()
        default_class = web.result()
        t1, down1, up1, wire1 = counters()
        cpu1 = proc_cpu.take({})
        tcp = bulk.result() if load else None
    finally:
        voice.stop()
        web.stop()
        bulk.stop()
    window = t1 - t0
    machine = proc_cpu.usage(cpu0, cpu1, window)  # percent of one core
    cores = os.cpu_count() or 1

    def mbps(count: int) -> float:
        return count * 8 / window / 1e6

    return {
        "voice": result,
        "default_class": default_class,
        "up_mbps": tcp.mbps_between(t0 - started, t1 - started) if tcp else 0.0,
        "down_mbps": tcp.mbps_between(t0 - started, t1 - started, reverse=True) if tcp else 0.0,
        "link_down_mbps": mbps(down1 - down0),
        "link_up_mbps": mbps(up1 - up0),
        "wire_down_mbps": mbps(wire1[0] - wire0[0]),
        "wire_up_mbps": mbps(wire1[1] - wire0[1]),
        "bfd_flaps": sum(bfd_flap_counts(net).values()) - flaps_before,
        "cpu_busy_pct": machine[proc_cpu.MACHINE] / cores,  # of the whole machine
        "cpu_steal_pct": machine[proc_cpu.STEAL] / cores,
    }


def describe(name: str, found: dict[str, Any]) -> str:
    voice = found["voice"]
    text = (f"{name}: voice RTT p50 {voice.percentile(50):.2f} ms, p99 {voice.percentile(99):.2f} ms "
            f"(as the application read it: p99 {voice.percentile(99, app=True):.2f} ms), "
            f"loss {voice.loss_pct:.2f} % ({voice.sent - voice.received}/{voice.sent})")
    web = found["default_class"]
    text += f"; default class (ping) p50 {web.percentile(50):.1f} ms, p99 {web.percentile(99):.1f} ms"
    if found["up_mbps"] or found["down_mbps"]:
        text += (f"; bulk goodput down {found['down_mbps']:.1f} Mbit/s, up {found['up_mbps']:.1f} Mbit/s"
                 f"; ISP link down {found['link_down_mbps']:.1f}, up {found['link_up_mbps']:.1f}")
        if found["wire_down_mbps"] or found["wire_up_mbps"]:
            text += f" (bulk's frames {found['wire_down_mbps']:.1f} / {found['wire_up_mbps']:.1f})"
    return text + (f"; BFD state changes {found['bfd_flaps']}; machine {found['cpu_busy_pct']:.0f} % busy, of which "
                   f"{found['cpu_steal_pct']:.0f} % (of the machine) taken by the hypervisor (steal)")


def arguments(description: str) -> argparse.ArgumentParser:
    """The options bench-qos and bench-qos-hops share: runs, phase lengths, the ISPs' links."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="voice measured per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="bulk before voice starts")
    parser.add_argument("--down-mbit", type=float, default=100.0)
    parser.add_argument("--up-mbit", type=float, default=20.0)
    parser.add_argument("--buffer-ms", type=float, default=250.0)
    return parser


@contextmanager
def emulated_access(prefix: str, args: argparse.Namespace, guard: LeakGuard) -> Iterator[tuple[str, Any, Any]]:
    """(run directory, network, controller): the reference network with the ISPs' access
    links of args, every path healthy, and the edges' shapers following REST."""
    with run_directory(prefix) as run_dir, running(run_dir, isp_rate_mbit=0, guard=guard) as (net, controller), \
            EdgeShapers(net, controller, run_dir):
        isp_links(net, args.down_mbit, args.up_mbit, args.buffer_ms)
        wait_reachable(net["h1"], SERVER4, timeout=60)
        wait_all_paths_healthy(controller)
        yield run_dir, net, controller


def qos_on(net: Any, controller: Any, args: argparse.Namespace) -> Policy:
    """The QoS policy over REST and the shaping at both ends; returns the policy."""
    policy = qos_policy(args.down_mbit, args.up_mbit)
    status, answer = api(controller, "PUT", POLICY_PATH, policy)
    assert status == 200, answer
    shaped = parse_policy(policy, net.plan.homenet)
    apply_shaping(net, shaped)
    wait_all_bfd_up(net)
    return shaped


def qos_off(net: Any, controller: Any) -> None:
    status, answer = api(controller, "PUT", POLICY_PATH, plain_policy())
    assert status == 200, answer
    clear_shaping(net)


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    guard = LeakGuard()
    rows: list[dict[str, Any]] = []
    with emulated_access("msp-bench-qos-", args, guard) as (_, net, controller):
        for index in range(args.runs):
            shaped = qos_on(net, controller, args)
            idle = phase(net, args.seconds, load=False, warmup=0)
            print(f"run {index + 1} " + describe("idle", idle), flush=True)
            loaded_on = phase(net, args.seconds, load=True, warmup=args.warmup, policy=shaped)
            print(f"run {index + 1} " + describe("QoS on", loaded_on), flush=True)
            qos_off(net, controller)
            loaded_off = phase(net, args.seconds, load=True, warmup=args.warmup)
            print(f"run {index + 1} " + describe("QoS off", loaded_off), flush=True)
            rows.append({"idle": idle, "on": loaded_on, "off": loaded_off})

    def median(values: list[float]) -> float | None:
        """None where losses made the percentile infinite (JSON has no infinity)."""
        found = statistics.median(values)
        return round(found, 3) if math.isfinite(found) else None

    def difference(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 3)

    def voice(which: str, p: float, app: bool = False) -> float | None:
        return median([r[which]["voice"].percentile(p, app=app) for r in rows])

    def share(which: str, key: str, rate: float) -> float | None:
        return median([r[which][key] / rate for r in rows])

    print(json.dumps({
        "runs": len(rows),
        "isp_down_mbit": args.down_mbit, "isp_up_mbit": args.up_mbit, "isp_buffer_ms": args.buffer_ms,
        "voice_rtt_idle_ms": voice("idle", 50),
        "voice_rtt_idle_p99_ms": voice("idle", 99),
        "voice_rtt_p50_ms_on": voice("on", 50),
        "voice_rtt_p99_ms_on": voice("on", 99),
        "voice_rtt_p50_ms_off": voice("off", 50),
        "voice_rtt_p99_ms_off": voice("off", 99),
        "voice_inflation_p99_ms_on": difference(voice("on", 99), voice("idle", 50)),
        "voice_app_rtt_idle_ms": voice("idle", 50, app=True),
        "voice_app_rtt_p99_ms_on": voice("on", 99, app=True),
        "voice_app_inflation_p99_ms_on": difference(voice("on", 99, app=True), voice("idle", 50, app=True)),
        "default_rtt_p50_ms_on": median([r["on"]["default_class"].percentile(50) for r in rows]),
        "default_rtt_p99_ms_on": median([r["on"]["default_class"].percentile(99) for r in rows]),
        "default_rtt_p50_ms_off": median([r["off"]["default_class"].percentile(50) for r in rows]),
        "default_rtt_p99_ms_off": median([r["off"]["default_class"].percentile(99) for r in rows]),
        "voice_loss_pct_on": median([r["on"]["voice"].loss_pct for r in rows]),
        "voice_loss_pct_off": median([r["off"]["voice"].loss_pct for r in rows]),
        "bulk_share_down_on": share("on", "down_mbps", args.down_mbit),
        "bulk_share_up_on": share("on", "up_mbps", args.up_mbit),
        "bulk_share_down_off": share("off", "down_mbps", args.down_mbit),
        "bulk_share_up_off": share("off", "up_mbps", args.up_mbit),
        "bulk_wire_share_down_on": share("on", "wire_down_mbps", args.down_mbit),
        "bulk_wire_share_up_on": share("on", "wire_up_mbps", args.up_mbit),
        "link_share_down_on": share("on", "link_down_mbps", args.down_mbit),
        "link_share_up_on": share("on", "link_up_mbps", args.up_mbit),
        "link_share_down_off": share("off", "link_down_mbps", args.down_mbit),
        "link_share_up_off": share("off", "link_up_mbps", args.up_mbit),
        "bulk_goodput_ceiling_down": round(SHAPE_FRACTION * GOODPUT_PER_FRAME, 3),
        "cpu_busy_pct_on": median([r["on"]["cpu_busy_pct"] for r in rows]),
        "cpu_steal_pct_idle": median([r["idle"]["cpu_steal_pct"] for r in rows]),
        "cpu_steal_pct_on": median([r["on"]["cpu_steal_pct"] for r in rows]),
        "bfd_flaps_on": sum(r["on"]["bfd_flaps"] for r in rows),
        "bfd_flaps_off": sum(r["off"]["bfd_flaps"] for r in rows),
        "leaked_packets": guard.final_count,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
