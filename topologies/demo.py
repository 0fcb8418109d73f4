"""`make demo`: the reference homenet multihomed through the MSP, with an ISP failure.

Starts the controller (ryu-manager) and the reference topology, shows that h1 and the
server reach each other over IPv4 and IPv6 from the PI prefix, then makes ISP A silently
drop everything in the middle of a TCP transfer and reports the outage each way and
whether the connection survived. Then a new home's box boots blank (topologies/blank_box.py):
it leases its ISP addresses, enrols with the MSP, receives its tunnels, and the host behind
it gets an address by DHCP and reaches the server; the times from the box's start are
printed. Cleans up and exits 0 when everything worked.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from . import control_ns
from .bird import routes
from .controller import wait_for
from .faults import isp_blackhole, start_edge, stop_edge
from .leak_guard import LeakGuard
from .measure import H1_4, H1_6, H2_4, SERVER4, SERVER6, ping, wait_reachable
from .scenario import carries_traffic, isp_failure, running, wait_path

DEFAULT_RUN_DIR = "/run/msp-demo"
OUTAGE_LIMIT_MS = 1000.0  # beyond this the demo calls the failover a failure


def line(text: str = "") -> None:
    print(text, flush=True)


def core_routes(net, prefix: str) -> str:
    """The Internet core's BGP routes for a prefix, as 'via upN (AS path)', best first."""
    found = sorted(routes(net["inet"], prefix, exact=True), key=lambda r: not r.primary)
    names = {64501: "up1/edge1", 64502: "up2/edge2"}
    return "; ".join(f"{'*' if r.primary else ' '}{names.get(r.as_path[0], r.as_path[0])} "
                     f"[{' '.join(map(str, r.as_path))}]" for r in found if r.as_path) or "none"


def edge_failure(net) -> bool:
    prefixes = [str(p) for p in net.config.homenet("home1").prefixes]
    wait_for(lambda: all(len(routes(net["inet"], p, exact=True)) == 2 for p in prefixes), 30,
             what="the core to learn the PI prefixes from both edges")
    for prefix in prefixes:
        line(f"   before: core routes {prefix:20s} {core_routes(net, prefix)}")
    stop_edge(net, "edge1")
    started = time.monotonic()
    wait_for(lambda: all("up1" not in core_routes(net, p) for p in prefixes), 10, interval=0.01,
             what="the core to drop edge1's routes")
    line(f"   edge1's switch stopped: edge1's announcement withdrawn in {(time.monotonic() - started) * 1000:.0f} ms")
    for prefix in prefixes:
        line(f"   during: core routes {prefix:20s} {core_routes(net, prefix)}")
    reachable = ping(net["server"], H1_4, count=3) is not None and ping(net["h1"], SERVER6, count=3) is not None
    line(f"   server <-> h1 through edge2: {'ok' if reachable else 'FAILED'}")
    start_edge(net, "edge1")
    started = time.monotonic()
    wait_for(lambda: all(core_routes(net, p).startswith("*up1") for p in prefixes), 60, interval=0.2,
             what="edge1 to be preferred again")
    line(f"   edge1 back: announced again after its {net.config.bgp.hold_down_s:.0f} s hold-down "
         f"({time.monotonic() - started:.1f} s)")
    for prefix in prefixes:
        line(f"   after:  core routes {prefix:20s} {core_routes(net, prefix)}")
    return reachable


def zero_configuration(run_dir: str) -> bool:
    """A new home: its MSPMB boots blank, its host is powered on with it."""
    from .blank_box import BlankBoxNetwork

    started = time.monotonic()
    with BlankBoxNetwork(os.path.join(run_dir, "blank-box")) as bb:
        line(f"   the MSP (controller, OVSDB manager) and the new home's ISPs up in {time.monotonic() - started:.1f} s;"
             " the box has no bridge, no address, no tunnel")
        box_start = bb.start_box()
        answered = bb.wait_host_reaches_server(30)
        multihomed = bb.wait_multihomed(30)
        leases = bb.agent_status().get("leases", {})
        line("   box leased " + ", ".join(f"{bridge.removeprefix('br-')} {lease.split()[0]}"
                                          for bridge, lease in sorted(leases.items()))
             + "; enrolled with its certificate; tunnels at the edge end at "
             + ", ".join(f"{isp} {bb.edge_address(isp)}" for isp in ("ispA", "ispB")))
        line(f"   host bbh1 got {bb.host_address()} by DHCP from the controller")
        line(f"   box start -> host's first packet answered by server  {answered - box_start:5.2f} s")
        line(f"   box start -> both ISPs' tunnels up (multihomed)     {multihomed - box_start:5.2f} s")
        rtt = ping(bb["bbh1"], "203.0.113.10", count=3)
        line(f"   bbh1 -> server  {f'ok, rtt {rtt:.2f} ms' if rtt is not None else 'FAILED'}")
        return rtt is not None and multihomed - box_start <= 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None, help="where logs and OVS state go")
    args = parser.parse_args()
    run_dir = args.run_dir or DEFAULT_RUN_DIR
    os.makedirs(run_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(run_dir, "controller.log"))  # the log of this run only
    ok = True
    line("msp demo: a homenet multihomed through a Multihoming Service Provider")
    line(f"  logs and switch state in {run_dir}")
    started = time.monotonic()
    guard = LeakGuard()
    with running(run_dir, guard=guard) as (net, controller):
        line(f"  network and controller up in {time.monotonic() - started:.1f} s; the controller runs in "
             f"namespace {control_ns.NAMESPACE}, REST on {controller.url}\n"
             f"  (MSP_TOKEN_FILE=etc/reference-operator.token mspctl --url {controller.url} show home1)")
        wait_reachable(net["h1"], SERVER4, timeout=60)
        line("\n1. Reachability from the PI prefixes (the ISPs only ever see tunnel packets)")
        for source, destination, label in (("h1", SERVER4, "h1 -> server  IPv4"), ("h1", SERVER6, "h1 -> server  IPv6"),
                                           ("server", H1_4, "server -> h1  IPv4 (inbound)"),
                                           ("server", H1_6, "server -> h1  IPv6 (inbound)"),
                                           ("h2", SERVER4, "h2 -> server  IPv4"), ("h1", H2_4, "h1 -> h2      IPv4")):
            rtt = ping(net[source], destination, count=3)
            ok &= rtt is not None
            line(f"   {label:32s} {f'ok, rtt {rtt:.2f} ms' if rtt is not None else 'FAILED'}")
        wait_path(net, "ispA")
        on_b = carries_traffic(net, "ispB")
        ok &= not on_b
        line(f"   traffic takes ISP A (policy: ispA, then ispB); ISP B carries {'it too!' if on_b else 'none of it'}")

        line("\n2. ISP A silently drops everything during a TCP transfer h1 -> server (plus 1000 pkt/s UDP each way)")
        result = isp_failure(net, "ispA")
        for label, stream in (("up   h1 -> server", result.up), ("down server -> h1", result.down)):
            line(f"   {label}: outage {stream.max_gap_ms:7.1f} ms, {stream.lost} of {stream.sent} packets lost")
            ok &= stream.max_gap_ms < OUTAGE_LIMIT_MS
        line(f"   TCP connection {'SURVIVED' if result.tcp.survived else 'BROKE: ' + result.tcp.error}"
             f" ({result.tcp.bytes_sent / 1e6:.0f} MB in {result.tcp.seconds:.1f} s)")
        ok &= result.tcp.survived
        wait_path(net, "ispB")
        line("   traffic now takes ISP B; h1 kept its address, so the session lived on")

        line("\n3. ISP A comes back")
        isp_blackhole(net["ispA"], False)
        back = time.monotonic()
        wait_path(net, "ispA")
        line(f"   traffic back on ISP A {time.monotonic() - back:.2f} s after it recovered "
             "(BFD up, then 2 s of flap damping)")

        line("\n4. BGP: the MSP announces the PI prefixes at both edges; edge1 fails, then returns")
        ok &= edge_failure(net)
    line("\n5. Zero configuration: a new home's box boots blank, leases its ISP addresses, enrols, is multihomed")
    with LeakGuard() as guard_bb:
        ok &= zero_configuration(run_dir)
    leaked = (guard.final_count or 0) + (guard_bb.final_count or 0)
    line(f"\n6. Containment: the leak guard counted {leaked} packets trying to leave this machine"
         " (the emulated networks use documentation and benchmarking ranges; nothing leaves the host)")
    ok &= guard.final_count == 0 and guard_bb.final_count == 0
    line(f"\nmsp demo: {'OK' if ok else 'FAILED'} (cleaned up; controller log kept in {run_dir}/controller.log)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
