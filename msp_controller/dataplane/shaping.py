"""Shaping just below each ISP's rates, with the classes' priorities inside: tc commands.

The queue that hurts on an access link is the ISP's own buffer in front of the slowest
link. The MSP holds both ends of every tunnel, so it sends a little slower than the ISP
carries (SHAPE_FRACTION of its rate): the ISP's buffer stays empty and the queue moves
into an HTB tree the MSP controls, where real-time classes go first.

- Upstream: at the MSPMB, on each uplink's underlay port, at that ISP's up rate.
- Downstream: at the edge, on the underlay port, one HTB class per homenet and ISP at
  that ISP's down rate, picked by the tunnel's outer destination (the uplink's address).
- Inside each: a leaf per queue, picked by u32 on the outer header's DSCP, which the VXLAN
  ports copy from the class's marking (dataplane/flows/qos.py, tos=inherit). Real-time
  queues have HTB priority 0 and a short FIFO; weighted ones share what is left by weight.

Shaping follows failover by construction: a class's packets on ISP B leave by ISP B's
port (MSPMB) or towards ISP B's address (edge), so ISP B's rates apply.

Pure functions returning `tc` argument lists, like provision.py's for ovs-vsctl: the
blank box's agent applies the MSPMB's (box/shaping_apply.py, sent by the OVSDB manager);
the reference topology applies both ends' itself. Apply them to a port whose root qdisc
was deleted first (clear_commands; an error there only means there was none).

This kernel has HTB, TBF, u32 and clsact, and no fq_codel, cake, prio or netem; OVS's
set_queue does nothing in the userspace datapath (../shared/PLATFORM.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from msp_controller.model.config import Homenet, Uplink
from msp_controller.model.policy import Policy
from msp_controller.model.qos import ClassQos

Command = list[str]

# Of the ISP's rate: the ISP's buffer stays empty as long as we send slower than it drains.
# Both count whole frames here; a real ISP that counts other overheads needs a lower figure.
SHAPE_FRACTION = 0.97
MTU_BYTES = 1514  # an underlay frame
REALTIME_SHARE = 0.2  # of the shaped rate guaranteed to the real-time queue (it may borrow more)
REALTIME_QUEUE_PACKETS = 64
BULK_QUEUE_MS = 30  # a weighted queue's FIFO, in time at the shaped rate: TCP fills it, voice never waits in it
MIN_QUEUE_BYTES = 16 * MTU_BYTES
# BFD inside a VXLAN tunnel: outer IP (20) + UDP (8) + VXLAN (8) + Ethernet (14) + inner IP (20),
# then the inner UDP destination port, 3784. BFD shares the real-time priority: a BFD packet
# that waits behind bulk for 3 intervals is a false failover (docs/design.md).
VXLAN_UDP_PORT = 4789
BFD_PORT_OFFSET = 72
BFD_UDP_PORT = 3784
CONTROL_KBPS = 256  # guaranteed to BFD
# Small packets (TCP's pure ACKs: 102 bytes of outer IP) get a queue of their own, first
# among the rest: behind a full upload queue the download's ACKs wait, or are dropped,
# and the download stalls (measured: docs/design.md). Capped, so small packets cannot starve bulk.
SMALL_PACKET_BYTES = 128  # outer IP total length below this
SMALL_SHARE = 0.05  # guaranteed
SMALL_CEIL_SHARE = 0.25  # at most
MAX_QUEUES = 13  # leaves per homenet and ISP (class ids are 16 per homenet and ISP)
UNSHAPED_KBIT = 10_000_000  # the edge's class for what belongs to no shaped homenet
UNSHAPED_MINOR = 0xFFFF
# Classes with children never use their quantum; setting it silences HTB's "quantum is big".
INNER_QUANTUM = ("quantum", str(MTU_BYTES))
MAX_EDGE_LINKS = (UNSHAPED_MINOR >> 4) - 1  # homenet-ISP pairs one edge port can shape


@dataclass(frozen=True)
class Queue:
    """One HTB leaf: the DSCPs it takes (empty: whatever no other queue takes)."""

    dscps: tuple[int, ...]
    realtime: bool
    weight: int


def queues(policy: Policy) -> tuple[Queue, ...]:
    """The policy's queues: one real-time queue for every DSCP real-time classes set, one per
    DSCP weighted classes set, and the default (the default class's share) last."""
    by_dscp: dict[int, ClassQos] = {}
    for qos in [c.qos for c in policy.classes] + [policy.default.qos]:
        if qos.set_dscp is not None:
            by_dscp.setdefault(qos.set_dscp, qos)
    realtime = tuple(sorted(d for d, q in by_dscp.items() if q.realtime))
    default_dscp = policy.default.qos.set_dscp
    weighted = [Queue((d,), False, int(q.priority)) for d, q in sorted(by_dscp.items())
                if not q.realtime and d != default_dscp]
    default_weight = policy.default.qos.priority
    found = ([Queue(realtime, True, 1)] if realtime else []) + weighted
    found.append(Queue((), False, int(default_weight) if default_weight != "realtime" else 1))
    if len(found) > MAX_QUEUES:
        raise ValueError(f"{len(found)} queues (at most {MAX_QUEUES}): use fewer distinct DSCPs")
    return tuple(found)


def _kbit(kbps: float) -> str:
    return f"{max(1, int(kbps))}kbit"


def _tos(dscp: int) -> tuple[str, str]:
    return f"0x{dscp << 2:02x}", "0xfc"


def _leaves(dev: str, parent: str, base: int, shaped_kbps: float, policy_queues: Sequence[Queue],
            dst: str | None) -> tuple[list[Command], list[Command], str]:
    """Leaf classes, their FIFOs and their filters under one shaped class; returns
    (classes and qdiscs, filters, the default leaf's class id)."""
    realtime_kbps = shaped_kbps * REALTIME_SHARE if any(q.realtime for q in policy_queues) else 0.0
    total_weight = sum(q.weight for q in policy_queues if not q.realtime)
    where = ["match", "ip", "dst", f"{dst}/32"] if dst else []
    control, small = f"1:{base + MAX_QUEUES + 2:x}", f"1:{base + MAX_QUEUES + 1:x}"
    commands: list[Command] = [
        ["class", "replace", "dev", dev, "parent", parent, "classid", control, "htb",
         "rate", _kbit(min(CONTROL_KBPS, shaped_kbps / 10)), "ceil", _kbit(shaped_kbps), "prio", "0",
         "quantum", str(MTU_BYTES)],
        ["qdisc", "replace", "dev", dev, "parent", control, "handle", f"{base + MAX_QUEUES + 2:x}:",
         "pfifo", "limit", str(REALTIME_QUEUE_PACKETS)],
        ["class", "replace", "dev", dev, "parent", parent, "classid", small, "htb",
         "rate", _kbit(shaped_kbps * SMALL_SHARE), "ceil", _kbit(shaped_kbps * SMALL_CEIL_SHARE), "prio", "0",
         "quantum", str(MTU_BYTES)],
        ["qdisc", "replace", "dev", dev, "parent", small, "handle", f"{base + MAX_QUEUES + 1:x}:",
         "pfifo", "limit", str(REALTIME_QUEUE_PACKETS * 4)],
    ]
    filters: list[Command] = [
        ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
         "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(VXLAN_UDP_PORT), "0xffff",
         "match", "u16", str(BFD_UDP_PORT), "0xffff", "at", str(BFD_PORT_OFFSET), *where, "flowid", control],
        # After the DSCP filters (prio 1): a small voice packet stays in its class's queue.
        ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32",
         "match", "u16", "0x0000", f"0x{0xFFFF & ~(SMALL_PACKET_BYTES - 1):04x}", "at", "2", *where,
         "flowid", small]]
    default_leaf = ""
    queue_bytes = max(MIN_QUEUE_BYTES, int(shaped_kbps * 1000 / 8 * BULK_QUEUE_MS / 1000))
    for index, queue in enumerate(policy_queues, start=1):
        classid = f"1:{base + index:x}"
        if queue.realtime:
            rate, prio = realtime_kbps, "0"
            fifo = ["pfifo", "limit", str(REALTIME_QUEUE_PACKETS)]
        else:
            rate, prio = (shaped_kbps - realtime_kbps) * queue.weight / total_weight, "1"
            fifo = ["bfifo", "limit", str(queue_bytes)]
        commands.append(["class", "replace", "dev", dev, "parent", parent, "classid", classid, "htb",
                         "rate", _kbit(rate), "ceil", _kbit(shaped_kbps), "prio", prio,
                         "quantum", str(MTU_BYTES * max(1, queue.weight if not queue.realtime else 1))])
        commands.append(["qdisc", "replace", "dev", dev, "parent", classid, "handle",
                         f"{base + index:x}:", *fifo])
        if not queue.dscps:
            default_leaf = classid
        for dscp in queue.dscps:
            filters.append(["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                            "u32", "match", "ip", "tos", *_tos(dscp), *where, "flowid", classid])
    if dst:  # anything else towards this uplink: its default queue
        filters.append(["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "3",
                        "u32", "match", "ip", "dst", f"{dst}/32", "flowid", default_leaf])
    return commands, filters, default_leaf


def clear_commands(dev: str) -> list[Command]:
    """Remove a port's shaping (fails harmlessly when it has none)."""
    return [["qdisc", "del", "dev", dev, "root"]]


def mspmb_shaping(policy: Policy, uplink: Uplink) -> list[Command]:
    """Upstream shaping on one uplink's port of the MSPMB; none when the ISP's up rate is unknown."""
    up = policy.isp_rates(uplink.name).up_kbps
    if up is None:
        return []
    shaped = up * SHAPE_FRACTION
    dev = uplink.port
    leaves, filters, default_leaf = _leaves(dev, "1:1", 0x10, shaped, queues(policy), None)
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", default_leaf.split(":")[1]],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
         "rate", _kbit(shaped), "ceil", _kbit(shaped), *INNER_QUANTUM],
        *leaves, *filters,
    ]


@dataclass(frozen=True)
class EdgeLink:
    """One homenet's uplink as the edge sees it: where its tunnel ends, the policy in force."""

    homenet: Homenet
    uplink: Uplink
    address: str  # the uplink's (outer) address
    policy: Policy


def edge_shaping(dev: str, links: Sequence[EdgeLink]) -> list[Command]:
    """Downstream shaping on an edge's underlay port: per homenet and ISP at that ISP's down
    rate, classes inside. Links without a down rate are not shaped."""
    shaped_links = [link for link in links if link.policy.isp_rates(link.uplink.name).down_kbps is not None]
    if len(shaped_links) > MAX_EDGE_LINKS:
        raise ValueError(f"{len(shaped_links)} shaped homenet uplinks on {dev} (at most {MAX_EDGE_LINKS})")
    commands: list[Command] = [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", f"{UNSHAPED_MINOR:x}"],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", f"1:{UNSHAPED_MINOR:x}", "htb",
         "rate", _kbit(UNSHAPED_KBIT), *INNER_QUANTUM],
    ]
    filters: list[Command] = []
    for number, link in enumerate(shaped_links, start=1):
        down = link.policy.isp_rates(link.uplink.name).down_kbps
        assert down is not None
        shaped = down * SHAPE_FRACTION
        parent = f"1:{number << 4:x}"
        commands.append(["class", "replace", "dev", dev, "parent", "1:", "classid", parent, "htb",
                         "rate", _kbit(shaped), "ceil", _kbit(shaped), *INNER_QUANTUM])
        leaves, link_filters, _ = _leaves(dev, parent, number << 4, shaped, queues(link.policy), link.address)
        commands += leaves
        filters += link_filters
    return commands + filters
