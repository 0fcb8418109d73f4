"""Failure injection and traffic accounting: ISP routers (nftables), MSP edges.

The kernel here has no netem, so ISP faults are nftables rules in the ISP router's own
namespace, on the forward hook: the router stops forwarding, the links stay up, nothing
is signalled to either end (a "silent" failure, as when an ISP's core breaks).

  table inet msp_fault   chain blackhole (prio -10): drop         isp_blackhole(node, True)
                         chain loss      (prio -10): random drop  isp_loss(node, percent)
  table inet msp_count   chain count     (prio +10): named counters "up" and "down"

The counter chain runs after the fault chains, so it counts what the ISP actually
forwarded: "up" from the customer side towards the Internet, "down" towards the customer.

MSP edges (at the end of this file): stop_edge / start_edge kill and restart an edge's
ovs-vswitchd; cut_edge_underlay(net, edge, on) is chain cut_<edge> of inet's msp_fault
table (drops everything to and from the edge's underlay port).

All functions are idempotent and raise ovsbox.CommandError (with nft's stderr) on failure.
By hand: `nsenter -t $(cat /run/msp/nodes/ispA.pid) -n nft list ruleset`.
"""
from __future__ import annotations

import json
from typing import Any

from mininet.node import Node

from topologies.ovsbox import run

FAULT_TABLE = "msp_fault"
COUNT_TABLE = "msp_count"
FAULT_PRIORITY = -10
COUNT_PRIORITY = 10


def _nft(node: Node, script: str) -> str:
    return run(["nft", "-f", "-"], node, input=script)


def _drop_chain(node: Node, chain: str) -> None:
    """Remove one fault chain (if any), then the table once it holds no chain."""
    _nft(node, f"add table inet {FAULT_TABLE}\n"
               f"add chain inet {FAULT_TABLE} {chain}\n"
               f"flush chain inet {FAULT_TABLE} {chain}\n"
               f"delete chain inet {FAULT_TABLE} {chain}\n")
    listing = json.loads(run(["nft", "-j", "list", "table", "inet", FAULT_TABLE], node))
    if not any("chain" in item for item in listing.get("nftables", [])):
        _nft(node, f"delete table inet {FAULT_TABLE}\n")


def _set_chain(node: Node, chain: str, rule: str) -> None:
    _nft(node, f"add table inet {FAULT_TABLE}\n"
               f"add chain inet {FAULT_TABLE} {chain} "
               f"{{ type filter hook forward priority {FAULT_PRIORITY}; policy accept; }}\n"
               f"flush chain inet {FAULT_TABLE} {chain}\n"
               f"add rule inet {FAULT_TABLE} {chain} {rule}\n")


def isp_blackhole(node: Node, on: bool) -> None:
    """on=True: the ISP silently drops everything it forwards. on=False: forwards again."""
    if on:
        _set_chain(node, "blackhole", "drop")
    else:
        _drop_chain(node, "blackhole")


def isp_loss(node: Node, percent: float, direction: str = "both") -> None:
    """Drop this percentage (0..100, steps of 0.01) of what the ISP forwards; 0 clears.

    direction "down" drops only towards the customer, "up" only from it (a round trip
    through the ISP then loses `percent` of its probes, not 1-(1-p)^2).
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"loss percentage {percent} is not within 0..100")
    if direction not in ("both", "up", "down"):
        raise ValueError(f"direction {direction!r} is not both, up or down")
    threshold = round(percent * 100)  # out of 10000
    if threshold == 0:
        _drop_chain(node, "loss")
        return
    selector = ""
    if direction != "both":
        customer = getattr(node, "customer_intf", None)
        if not customer:
            raise ValueError(f"{node.name} has no customer interface to tell directions apart")
        selector = f'{"oifname" if direction == "down" else "iifname"} "{customer}" '
    _set_chain(node, "loss", f"{selector}numgen random mod 10000 < {threshold} drop")


def clear_faults(node: Node) -> None:
    """Remove every fault of this ISP (blackhole and loss)."""
    _drop_chain(node, "blackhole")
    _drop_chain(node, "loss")


def install_counters(node: Node, customer_intf: str) -> None:
    """(Re)create the msp_count table; counters start from zero."""
    _nft(node, f"add table inet {COUNT_TABLE}\n"
               f"delete table inet {COUNT_TABLE}\n"
               f"table inet {COUNT_TABLE} {{\n"
               f"  counter up {{ }}\n"
               f"  counter down {{ }}\n"
               f"  chain count {{\n"
               f"    type filter hook forward priority {COUNT_PRIORITY}; policy accept;\n"
               f"    iifname \"{customer_intf}\" counter name \"up\"\n"
               f"    oifname \"{customer_intf}\" counter name \"down\"\n"
               f"  }}\n"
               f"}}\n")


def isp_counters(node: Node) -> dict[str, dict[str, int]]:
    """What the ISP forwarded so far: {"up": {"packets": n, "bytes": b}, "down": {...}}."""
    listing: dict[str, Any] = json.loads(run(["nft", "-j", "list", "table", "inet", COUNT_TABLE], node))
    counters = {}
    for item in listing.get("nftables", []):
        counter = item.get("counter")
        if counter and counter.get("name") in ("up", "down"):
            counters[counter["name"]] = {"packets": int(counter.get("packets", 0)),
                                         "bytes": int(counter.get("bytes", 0))}
    missing = {"up", "down"} - set(counters)
    if missing:
        raise RuntimeError(f"{node.name}: table inet {COUNT_TABLE} lacks counter(s) {sorted(missing)}")
    return counters


def isp_faults(node: Node) -> set[str]:
    """Names of the fault chains active on this ISP ("blackhole", "loss")."""
    tables = json.loads(run(["nft", "-j", "list", "tables", "inet"], node)).get("nftables", [])
    if not any(item.get("table", {}).get("name") == FAULT_TABLE for item in tables):
        return set()
    out = run(["nft", "-j", "list", "table", "inet", FAULT_TABLE], node)
    return {item["chain"]["name"] for item in json.loads(out).get("nftables", []) if "chain" in item}


__all__ = [
    "COUNT_TABLE",
    "FAULT_TABLE",
    "clear_faults",
    "install_counters",
    "isp_blackhole",
    "isp_counters",
    "isp_faults",
    "isp_loss",
]


# --- per-class accounting: what an ISP carried of one inner UDP port --------------------------
INNER_TABLE = "msp_inner"
# Offsets (bits) from the outer UDP header to the inner IPv4 UDP ports of a VXLAN packet:
# outer UDP 8 + VXLAN 8 + Ethernet 14 + IPv4 20 bytes (no options) = 50 bytes.
INNER_UDP_SRC_BITS, INNER_UDP_DST_BITS = 400, 416


def watch_inner_udp_port(node: Node, port: int) -> None:
    """Count the tunnel packets whose inner IPv4 UDP packet has this port (either end), per direction."""
    customer = getattr(node, "customer_intf", None)
    if not customer:
        raise ValueError(f"{node.name} has no customer interface to tell directions apart")
    _nft(node, f"add table inet {INNER_TABLE}\n"
               f"add chain inet {INNER_TABLE} count "
               f"{{ type filter hook forward priority {COUNT_PRIORITY + 1}; policy accept; }}\n"
               f"add counter inet {INNER_TABLE} up{port}\n"
               f"add counter inet {INNER_TABLE} down{port}\n"
               f"add rule inet {INNER_TABLE} count iifname \"{customer}\" udp dport 4789 "
               f"@th,{INNER_UDP_DST_BITS},16 {port} counter name \"up{port}\"\n"
               f"add rule inet {INNER_TABLE} count oifname \"{customer}\" udp dport 4789 "
               f"@th,{INNER_UDP_SRC_BITS},16 {port} counter name \"down{port}\"\n")


def inner_udp_counts(node: Node, port: int) -> dict[str, int]:
    """Packets counted by watch_inner_udp_port: {"up": n, "down": n}."""
    counts = {}
    for direction in ("up", "down"):
        listing = json.loads(run(["nft", "-j", "list", "counter", "inet", INNER_TABLE, f"{direction}{port}"], node))
        counter = next(item["counter"] for item in listing["nftables"] if "counter" in item)
        counts[direction] = int(counter["packets"])
    return counts


def unwatch_inner_udp(node: Node) -> None:
    _nft(node, f"add table inet {INNER_TABLE}\ndelete table inet {INNER_TABLE}\n")


# --- MSP edge failures -------------------------------------------------------------------------
# `net` is a topologies.network.ReferenceNetwork (not imported here: it imports this module,
# through topologies.nodes).


def stop_edge(net: Any, edge: str) -> None:
    """The edge fails: its ovs-vswitchd is killed (by PID, reaped). Its tunnels die (BFD goes
    down at the homenet's end), its controller connections drop; ovsdb-server and the
    database stay, so start_edge() brings it back as it was provisioned. Idempotent."""
    net.plan.site(edge)  # a clear error for an unknown edge
    net[edge].stop_vswitchd()


def start_edge(net: Any, edge: str, timeout: float = 20.0) -> None:
    """The edge comes back: ovs-vswitchd again on the same database, the kernel side of its
    underlay bridge (addresses, default route) and any OVS user routes restored. Its
    flows are the controller's to install again once it reconnects."""
    net.plan.site(edge)
    net[edge].start_vswitchd(timeout=timeout)


def edge_running(net: Any, edge: str) -> bool:
    """Does the edge's ovs-vswitchd run?"""
    return "ovs-vswitchd" in net[edge].ovs_pids()


def cut_edge_underlay(net: Any, edge: str, on: bool) -> None:
    """on=True: inet silently drops everything to and from the edge's underlay port (its
    tunnels die, the edge itself and its controller connection stay up). on=False: undo."""
    site = net.plan.site(edge)
    inet = net[net.plan.inet]
    chain = f"cut_{edge}"
    if on:
        intf = site.underlay_inet_intf
        _nft(inet, f"add table inet {FAULT_TABLE}\n"
                   f"add chain inet {FAULT_TABLE} {chain} "
                   f"{{ type filter hook forward priority {FAULT_PRIORITY}; policy accept; }}\n"
                   f"flush chain inet {FAULT_TABLE} {chain}\n"
                   f"add rule inet {FAULT_TABLE} {chain} iifname \"{intf}\" drop\n"
                   f"add rule inet {FAULT_TABLE} {chain} oifname \"{intf}\" drop\n")
    else:
        _drop_chain(inet, chain)


__all__ += ["cut_edge_underlay", "edge_running", "start_edge", "stop_edge"]


# --- what an ISP carried of the hosts' IPv4 pings (not BFD, not the controller's probes) ------
ICMP_TABLE = "msp_icmp"
# Bits from the outer UDP header to the inner IPv4 protocol byte of a VXLAN packet:
# outer UDP 8 + VXLAN 8 + Ethernet 14 + 9 bytes into the IPv4 header = 39 bytes.
INNER_IPV4_PROTO_BITS = 312
INNER_ETHERTYPE_BITS = 224  # outer UDP 8 + VXLAN 8 + 12 bytes into the Ethernet header


def watch_inner_icmp(node: Node) -> None:
    """Count, per direction, the tunnel packets that carry an IPv4 ICMP packet (pings),
    leaving out BFD and the controller's UDP probes, which also cross every ISP. Idempotent."""
    customer = getattr(node, "customer_intf", None)
    if not customer:
        raise ValueError(f"{node.name} has no customer interface to tell directions apart")
    match = (f"udp dport 4789 @th,{INNER_ETHERTYPE_BITS},16 0x0800 "
             f"@th,{INNER_IPV4_PROTO_BITS},8 1")
    _nft(node, f"add table inet {ICMP_TABLE}\n"
               f"delete table inet {ICMP_TABLE}\n"
               f"table inet {ICMP_TABLE} {{\n"
               f"  counter up {{ }}\n"
               f"  counter down {{ }}\n"
               f"  chain count {{\n"
               f"    type filter hook forward priority {COUNT_PRIORITY + 1}; policy accept;\n"
               f"    iifname \"{customer}\" {match} counter name \"up\"\n"
               f"    oifname \"{customer}\" {match} counter name \"down\"\n"
               f"  }}\n"
               f"}}\n")


def inner_icmp_counts(node: Node) -> dict[str, int]:
    """Packets counted by watch_inner_icmp: {"up": n, "down": n}."""
    listing = json.loads(run(["nft", "-j", "list", "table", "inet", ICMP_TABLE], node))
    counts = {item["counter"]["name"]: int(item["counter"]["packets"])
              for item in listing.get("nftables", []) if "counter" in item}
    return {"up": counts.get("up", 0), "down": counts.get("down", 0)}


def unwatch_inner_icmp(node: Node) -> None:
    _nft(node, f"add table inet {ICMP_TABLE}\ndelete table inet {ICMP_TABLE}\n")


__all__ += ["inner_icmp_counts", "unwatch_inner_icmp", "watch_inner_icmp"]
