"""Where the voice waits under load: bench-qos's voice and bulk, with every hop's delay.

The same network, ISPs, policy and load as bench/qos.py, with tcpdump on every interface the
voice crosses (topologies/hops.py), QoS on and then off, in each run. Prints each hop's
p50, p99, maximum and losses per phase, then one JSON object (last line): per phase and hop,
the median over the runs of the hop's p99 and the packets lost there, and the voice's own
round trip. tcpdump costs CPU on these two cores, so the round trips here run higher than
bench-qos's; the place each hop names is the point.

--flood down|up replaces the bulk TCP with UDP at twice the ISP's rate that way, which does
not back off: it keeps the bulk queues full, and shows where a full queue costs the voice.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Any

from bench.qos import BULK_PORT, TRANSFER_MARGIN_S, VOICE_PORT, arguments, emulated_access, qos_off, qos_on
from topologies.hops import HopDelay, VoiceHops
from topologies.leak_guard import LeakGuard
from topologies.measure import H1_4, SERVER4, TcpTransfer
from topologies.shaping import VoicePing


def load(net: Any, seconds: float, flood: str | None, rate_mbit: float) -> TcpTransfer:
    """Bulk TCP both ways, or UDP at twice rate_mbit one way (flood "down" or "up")."""
    if flood is None:
        return TcpTransfer(net["h1"], net["server"], SERVER4, seconds, port=BULK_PORT, bidir=True)
    sender, receiver, destination = ((net["server"], net["h1"], H1_4) if flood == "down"
                                     else (net["h1"], net["server"], SERVER4))
    return TcpTransfer(sender, receiver, destination, seconds, bitrate=f"{2 * rate_mbit:g}M", port=BULK_PORT,
                       udp=True)


def traced_phase(net: Any, directory: str, seconds: float, warmup: float, bulk: TcpTransfer) -> dict[str, Any]:
    """The load (`bulk`, started here), then voice for `seconds` with every hop captured."""
    hops = VoiceHops(net, VOICE_PORT, directory)
    voice = VoicePing(net["h1"], net["server"], SERVER4, VOICE_PORT, seconds)
    hops.start()
    try:
        bulk.start()
        time.sleep(warmup)  # a schedule: let TCP fill whatever queue it fills
        voice.start()
        result = voice.result()
    finally:
        voice.stop()
        bulk.stop()
        hops.stop()
    request, reply = hops.delays()
    return {"voice": result, "request": request, "reply": reply}


def show(run: int, name: str, found: dict[str, Any]) -> None:
    voice = found["voice"]
    print(f"run {run} {name}: voice RTT p50 {voice.percentile(50):.2f} ms, p99 {voice.percentile(99):.2f} ms, "
          f"loss {voice.loss_pct:.2f} %", flush=True)
    for way in ("request", "reply"):
        for hop in found[way]:
            print(f"  {way:7} {hop.describe()}", flush=True)


def summary(rows: list[dict[str, Any]], phase: str) -> dict[str, Any]:
    """Medians over the runs, per hop (named 'start -> end', in path order)."""
    def median(values: list[float]) -> float | None:
        """None where no packet crossed or a loss made the percentile infinite (JSON has neither)."""
        found = statistics.median(values)
        return round(found, 3) if math.isfinite(found) else None

    out: dict[str, Any] = {"voice_rtt_p99_ms": median([r[phase]["voice"].percentile(99) for r in rows]),
                           "voice_loss_pct": median([r[phase]["voice"].loss_pct for r in rows])}
    for way in ("request", "reply"):
        by_hop: dict[str, list[HopDelay]] = {}
        for row in rows:
            for hop in row[phase][way]:
                by_hop.setdefault(f"{hop.start} -> {hop.end}", []).append(hop)
        out[way] = {name: {"p99_ms": median([h.p99_ms for h in hops]), "lost": median([h.lost for h in hops])}
                    for name, hops in by_hop.items()}
    return out


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--flood", choices=("down", "up"), help="UDP at twice the rate one way, not TCP")
    args = parser.parse_args()
    flood_rate = args.down_mbit if args.flood == "down" else args.up_mbit
    span = args.seconds + args.warmup + TRANSFER_MARGIN_S
    guard = LeakGuard()
    rows: list[dict[str, Any]] = []
    with emulated_access("msp-bench-qos-hops-", args, guard) as (run_dir, net, controller):
        for index in range(args.runs):
            qos_on(net, controller, args)
            shaped = traced_phase(net, _fresh(run_dir, f"on-{index}"), args.seconds, args.warmup,
                                  load(net, span, args.flood, flood_rate))
            show(index + 1, "QoS on", shaped)
            qos_off(net, controller)
            unshaped = traced_phase(net, _fresh(run_dir, f"off-{index}"), args.seconds, args.warmup,
                                    load(net, span, args.flood, flood_rate))
            show(index + 1, "QoS off", unshaped)
            rows.append({"on": shaped, "off": unshaped})
    print(json.dumps({"runs": len(rows), "flood": args.flood, "isp_down_mbit": args.down_mbit,
                      "isp_up_mbit": args.up_mbit, "isp_buffer_ms": args.buffer_ms,
                      "on": summary(rows, "on"), "off": summary(rows, "off"),
                      "leaked_packets": guard.final_count}))
    return 0


def _fresh(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.makedirs(path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
