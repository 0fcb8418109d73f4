"""Edge-scale benchmark: what one MSP edge's ovs-vswitchd pays per homenet, by tunnel design.

Designs (--design):
  ports          per homenet and ISP, a VXLAN port with BFD at the edge (BFD at both ends)
  reflect-ports  the same ports without BFD: the home box runs BFD and the edge returns its
                 BFD packets in the datapath (a megaflow, no BFD state), so the home's
                 session fails when either direction fails; the controller relays the
                 home's port status to the edge's groups
  reflect        as reflect-ports, with one flow-based VXLAN port per ISP at the edge (the
                 VNI and remote address come from the flow) instead of a port per homenet
  shared-ports   what the controller builds: as reflect, but each homenet's flows match its
                 key and its box's address (no other sender is answered or admitted) and
                 BFD goes back to that address, set by the flow
For each N in --homenets: N homes with two ISPs each (bench/edge_ovs.py), BFD at --bfd-ms,
the same forwarding flows per homenet at the edge in both designs. Measures the edge's CPU
idle (BFD only) and its memory per homenet, then cuts one home's ISP A path (a drop flow at
the edge's underlay) --cuts times and times the home's BFD detection (and, with ports, the
edge's). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from topologies.leak_guard import LeakGuard
from topologies.ovsbox import wait_for

from .edge_ovs import (
    EDGE_ADDRESSES,
    EDGE_NS,
    EDGE_VETH,
    HOMES_NS,
    HOMES_VETH,
    OvsInstance,
    cpu_percent,
    home_address,
    link,
    rss_mb,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
SLOTS = ("a", "b")
DESIGNS = ("ports", "reflect-ports", "reflect", "shared-ports")
CHOSEN = "shared-ports"  # what the controller builds (docs/design.md)
SHARED = ("reflect", "shared-ports")  # one flow-based VXLAN port per slot
FLOWS_PER_HOMENET = 6  # about what a homenet's part holds at the edge (classify, egress, ingress)
CUT_TABLE = "msp_cut"
CUT_RULESET = (f"table netdev {CUT_TABLE} {{\n  chain out {{\n"
               f"    type filter hook egress device \"{HOMES_VETH}\" priority 0;\n  }}\n}}\n")
STATE = re.compile(r"State: (\w+)")
UP = re.compile(r"(?<![_\w])state=up\b")


def measured_homes(n: int, cuts: int) -> set[int]:
    """The homes whose paths are cut (at the full BFD rate even when the others are slower)."""
    return {(n // 2 + c) % n for c in range(cuts)}


def home_bfd_ms(index: int, n: int, cuts: int, bfd_ms: int, background_ms: int | None) -> int:
    return bfd_ms if background_ms is None or index in measured_homes(n, cuts) else background_ms


def homes_ports(n: int, cuts: int, bfd_ms: int, background_ms: int | None,
                replay: bool = False) -> list[list[str]]:
    commands = []
    for i in (sorted(measured_homes(n, cuts)) if replay else range(n)):
        interval = home_bfd_ms(i, n, cuts, bfd_ms, background_ms)
        for k, slot in enumerate(SLOTS):
            commands.append(["add-port", "homes", f"h{i}-{slot}", "--", "set", "interface", f"h{i}-{slot}",
                             "type=vxlan", f"options:remote_ip={EDGE_ADDRESSES[k]}",
                             f"options:local_ip={home_address(k, i)}", f"options:key={i + 1}",
                             "bfd:enable=true", f"bfd:min_tx={interval}", f"bfd:min_rx={interval}"])
    return commands


def bfd_packets_per_s(n: int, cuts: int, bfd_ms: int, background_ms: int | None) -> float:
    """BFD packets the homes send per second, all sessions together (one way)."""
    return sum(len(SLOTS) * 1000 / home_bfd_ms(i, n, cuts, bfd_ms, background_ms) for i in range(n))


def edge_ports(design: str, n: int, bfd_ms: int) -> list[list[str]]:
    if design in SHARED:
        return [["add-port", "br-msp", f"vx-{slot}", "--", "set", "interface", f"vx-{slot}", "type=vxlan",
                 "options:remote_ip=flow", "options:key=flow", f"options:local_ip={EDGE_ADDRESSES[k]}"]
                for k, slot in enumerate(SLOTS)]
    bfd = ["bfd:enable=true", f"bfd:min_tx={bfd_ms}", f"bfd:min_rx={bfd_ms}"] if design == "ports" else []
    return [["add-port", "br-msp", f"e{i}-{slot}", "--", "set", "interface", f"e{i}-{slot}", "type=vxlan",
             f"options:remote_ip={home_address(k, i)}", f"options:local_ip={EDGE_ADDRESSES[k]}",
             f"options:key={i + 1}", *bfd]
            for i in range(n) for k, slot in enumerate(SLOTS)]


def edge_flows(design: str, n: int) -> list[str]:
    flows = []
    if design == "reflect":
        for slot in SLOTS:
            # The home's BFD packet goes back where it came from, as it is (TTL 255 kept).
            flows.append(f"table=0,priority=500,in_port=vx-{slot},udp,tp_dst=3784,"
                         "actions=move:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],in_port")
    if design == "reflect-ports":
        # One flow for every port: BFD back out of the port it came in on.
        flows.append("table=0,priority=500,udp,tp_dst=3784,actions=in_port")
    for i in range(n):
        for k, slot in enumerate(SLOTS):
            if design == "shared-ports":
                # As the controller builds it: the home's key and address, BFD sent back there.
                source = f"in_port=vx-{slot},tun_id={i + 1},tun_src={home_address(k, i)}"
                flows.append(f"table=0,priority=500,{source},udp,tp_dst=3784,"
                             f"actions=set_field:{home_address(k, i)}->tun_dst,in_port")
            else:
                source = f"in_port=vx-{slot},tun_id={i + 1}" if design == "reflect" else f"in_port=e{i}-{slot}"
            for j in range(FLOWS_PER_HOMENET // len(SLOTS)):
                flows.append(f"table=0,priority=200,{source},ip,nw_src=10.{i >> 8 & 255}.{i & 255}.{j}/32,"
                             "actions=drop")
    return flows


def sessions_up(homes: OvsInstance) -> int:
    out = homes.vsctl("--format=csv", "--no-headings", "--columns=bfd_status", "list", "interface")
    return len(UP.findall(out))


def bfd_state(instance: OvsInstance, port: str) -> str:
    found = STATE.search(instance.appctl("bfd/show", port))
    return found.group(1) if found else "unknown"


def time_cut(homes: OvsInstance, edge: OvsInstance, cutter: subprocess.Popen[str], design: str,
             index: int) -> dict[str, float]:
    """Cut one home's ISP A path (its packets to the edge); time each BFD end going down.

    Times come from each ovs-vswitchd's own log line for the state change (millisecond
    timestamps), counted from just before the drop flows were sent: an upper bound, free
    of the polling's own delay on a busy machine."""
    address = home_address(0, index)
    watch = {"home": (homes, f"h{index}-a")}
    if design == "ports":
        watch["edge"] = (edge, f"e{index}-a")
    # The cut is made in the homes' kernel (an nftables egress hook on their veth, which
    # sees what OVS sends), so its moment is known however loaded the edge is.
    start = time.time()
    cutter.stdin.write(f"add rule netdev {CUT_TABLE} out ip saddr {address} drop\n")
    cutter.stdin.flush()
    cutter.stdout.readline()  # the rule is in: the cut took effect between start and here
    cut = time.time()
    polled: dict[str, float] = {}
    try:
        deadline = start + 10
        while len(polled) < len(watch) and time.time() < deadline:
            for name, (instance, port) in watch.items():
                if name not in polled and bfd_state(instance, port) == "down":
                    polled[name] = time.time()
    finally:
        cutter.stdin.write(f"flush chain netdev {CUT_TABLE} out\n")
        cutter.stdin.flush()
        cutter.stdout.readline()
    # OVS rate-limits its BFD log lines: with thousands of sessions, fall back to the poll.
    found = {}
    for name, (instance, port) in watch.items():
        if name in polled:
            down = down_at(instance, port, start) or polled[name]
            found[name] = (down - start) * 1000
            found[name + "_lower"] = (down - cut) * 1000
    wait_for(lambda: bfd_state(homes, f"h{index}-a") == "up", 30, what=f"h{index}-a back up")
    return found


def start_cutter(homes: OvsInstance) -> subprocess.Popen[str]:
    """A shell in the homes' namespace, started ahead, that runs one nft command per line
    and answers "done" once it is applied: a cut costs one nft run, not a namespace entry."""
    return subprocess.Popen(["ip", "netns", "exec", homes.namespace, "sh", "-c",
                             "while read -r line; do nft \"$line\" || true; echo done; done"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def down_at(instance: OvsInstance, port: str, after: float) -> float | None:
    """When the port's BFD went from up to down, after `after`, by ovs-vswitchd's log."""
    pattern = re.compile(rf"^(\S+)\|\d+\|bfd[^|]*\|INFO\|{re.escape(port)}: BFD state change: up->down")
    for line in (instance.dir / "ovs-vswitchd.log").read_text().splitlines():
        found = pattern.match(line)
        if found:
            when = datetime.datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
            stamp = when.replace(tzinfo=datetime.UTC).timestamp()
            if stamp >= after - 0.001:
                return stamp
    return None


def start_replay(homes: OvsInstance, edge: OvsInstance, n: int, cuts: int) -> subprocess.Popen[str]:
    """The homes that are not cut, as raw BFD packets at the full rate (bench/bfd_replay.py)."""
    src = homes.ns("cat", "/sys/class/net/br-up/address").strip()
    dst = edge.ns("cat", "/sys/class/net/br-up/address").strip()
    argv = ["ip", "netns", "exec", homes.namespace, sys.executable, "-m", "bench.bfd_replay", HOMES_VETH,
            src, dst, str(n), *map(str, sorted(measured_homes(n, cuts)))]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_replay(process: subprocess.Popen[str]) -> float:
    """Packets per second the stand-in homes sent."""
    process.terminate()
    out, err = process.communicate(timeout=30)
    fields = out.split()
    if len(fields) != 3:
        raise RuntimeError(f"bfd_replay failed: {err.strip()[-500:]}")
    return int(fields[0]) / float(fields[1])


def measure(design: str, n: int, bfd_ms: int, background_ms: int | None, idle_seconds: float, cuts: int,
            run_dir: pathlib.Path, replay: bool = False) -> dict[str, Any]:
    homes, edge = OvsInstance(HOMES_NS, run_dir / "homes"), OvsInstance(EDGE_NS, run_dir / "edge")
    replayer: subprocess.Popen[str] | None = None
    try:
        homes.start()
        edge.start()
        link(homes, edge)
        homes.underlay(HOMES_VETH, [home_address(k, i) for k in range(len(SLOTS)) for i in range(n)], 17)
        homes.ns("nft", "-f", "-", input=CUT_RULESET)  # where time_cut() cuts
        edge.underlay(EDGE_VETH, EDGE_ADDRESSES, 17)
        for instance, bridge in ((homes, "homes"), (edge, "br-msp")):
            instance.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
                           "fail_mode=secure", "protocols=OpenFlow13")
        edge_rss_base = rss_mb(edge.vswitchd_pid)
        pps = bfd_packets_per_s(n, cuts, bfd_ms, None if replay else background_ms)
        started = time.monotonic()
        edge.transact(edge_ports(design, n, bfd_ms))
        edge.add_flows("br-msp", edge_flows(design, n))
        homes.transact(homes_ports(n, cuts, bfd_ms, background_ms, replay))
        wanted = len(SLOTS) * (len(measured_homes(n, cuts)) if replay else n)
        try:
            wait_for(lambda: sessions_up(homes) >= wanted, 60 + n / 10, interval=0.5,
                     what=f"{wanted} BFD sessions up")
        except TimeoutError:
            # The finding itself: this design cannot bring its sessions up at this N here.
            result = {"design": design, "homenets": n, "bfd_ms": bfd_ms, "sessions": len(SLOTS) * n,
                      "sessions_up": sessions_up(homes),
                      "edge_cpu_pct_idle": round(cpu_percent(edge.vswitchd_pid, 3), 1),
                      "homes_cpu_pct_idle": round(cpu_percent(homes.vswitchd_pid, 3), 1), "carried": False}
            print(json.dumps(result), flush=True)
            return result
        up_s = time.monotonic() - started
        replayer = start_replay(homes, edge, n, cuts) if replay else None
        if replayer is not None:
            time.sleep(2)  # let the stand-ins reach their rate before the window (a schedule)
        edge_cpu = cpu_percent(edge.vswitchd_pid, idle_seconds)
        homes_cpu = cpu_percent(homes.vswitchd_pid, 2)
        edge_rss = rss_mb(edge.vswitchd_pid)
        still_up = sessions_up(homes)  # all still up after the idle window (under the replay)?
        try:
            cutter = start_cutter(homes)
            cut_results = [time_cut(homes, edge, cutter, design, index) for index in sorted(measured_homes(n, cuts))]
            cutter.stdin.close()
            cutter.wait(timeout=10)
        finally:
            replay_pps = stop_replay(replayer) if replayer is not None else None
        home_ms = [c["home"] for c in cut_results if "home" in c]
        home_lower_ms = [c["home_lower"] for c in cut_results if "home_lower" in c]
        edge_ms = [c["edge"] for c in cut_results if "edge" in c]
        result = {
            "design": design, "homenets": n, "bfd_ms": bfd_ms, "background_bfd_ms": background_ms,
            "bfd_pps": round(pps), "replayed": replay, "all_up_s": round(up_s, 1),
            "sessions_up_after_idle": still_up, "sessions": len(SLOTS) * n,
            "edge_cpu_pct_idle": round(edge_cpu, 1),
            "edge_cpu_pct_per_1000": round(edge_cpu * 1000 / n, 1),
            # What 1,000 homenets would cost with every session at bfd_ms, from the cost per
            # packet measured here (an upper bound: busier sockets batch better).
            "edge_cpu_pct_per_1000_at_bfd_ms": round(edge_cpu / pps * bfd_packets_per_s(1000, 0, bfd_ms, None), 1),
            "edge_rss_mb": round(edge_rss, 1),
            "edge_mb_per_homenet": round((edge_rss - edge_rss_base) / n, 3),
            "homes_cpu_pct_idle": round(homes_cpu, 1),
            "detect_ms_home": round(statistics.median(home_ms), 1) if home_ms else None,
            "detect_ms_home_lower": round(statistics.median(home_lower_ms), 1) if home_lower_ms else None,
            "detect_ms_edge": round(statistics.median(edge_ms), 1) if edge_ms else None,
            "replay_pps": round(replay_pps) if replay_pps is not None else None,
            "cuts_detected": len(home_ms), "cuts": cuts, "carried": still_up >= wanted and len(home_ms) == cuts,
        }
        print(json.dumps(result), flush=True)
        return result
    finally:
        if replayer is not None and replayer.poll() is None:
            replayer.kill()
            replayer.wait()
        edge.stop()
        homes.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homenets", default="100,1000", help="comma-separated N")
    parser.add_argument("--design", choices=(*DESIGNS, "all"), default="all")
    parser.add_argument("--bfd-ms", type=int, default=30)
    parser.add_argument("--background-bfd-ms", type=int, default=None,
                        help="BFD interval of the homes not cut: lets 1,000 emulated homes fit on 2 cores")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--cuts", type=int, default=3)
    parser.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                        help="homes not cut are raw BFD packets at the full rate (bench/bfd_replay.py) instead "
                             "of Open vSwitch ports: 1,000 homes fit on 2 cores")
    args = parser.parse_args()
    designs = DESIGNS if args.design == "all" else (args.design,)
    sizes = [int(n) for n in args.homenets.split(",")]
    results = []
    with LeakGuard() as guard:
        for design in designs:
            for n in sizes:
                with tempfile.TemporaryDirectory(prefix="msp-edge-scale-", dir="/run") as run_dir:
                    results.append(measure(design, n, args.bfd_ms, args.background_bfd_ms, args.idle_seconds,
                                           args.cuts, pathlib.Path(run_dir), args.replay))
    chosen = [r for r in results if r["design"] == CHOSEN and r["carried"]] or results
    largest = max(chosen, key=lambda r: r["homenets"])
    summary = {
        "design": largest["design"],
        "homenets": largest["homenets"],
        "edge_cpu_pct_idle": largest["edge_cpu_pct_idle"],
        "edge_cpu_pct_per_1000": largest.get("edge_cpu_pct_per_1000_at_bfd_ms"),
        "edge_mb_per_homenet": largest.get("edge_mb_per_homenet"),
        "failover_ms_at_scale": largest.get("detect_ms_home"),
        "runs": results,
        "leaked_packets": guard.final_count,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
