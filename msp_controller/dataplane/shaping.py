"""Shaping just below each ISP's rates, with the classes' priorities inside: tc commands.

The queue that hurts on an access link is the ISP's own buffer in front of the slowest
link. The MSP holds both ends of every tunnel, so it sends a little slower than the ISP
carries (SHAPE_FRACTION of its rate): the ISP's buffer stays empty and the queue moves
into an HTB tree the MSP controls, where real-time classes go first.

- Upstream: at the MSPMB, on each uplink's underlay port, at that ISP's up rate.
- Downstream: at the edge, on the underlay port, one HTB class per homenet and ISP at
  that ISP's down rate, picked by the tunnel's key and outer source (the edge's address
  for that ISP).
- Inside each: a leaf per queue, picked by u32 on the outer header's DSCP, which the VXLAN
  ports copy from the class's marking (dataplane/flows/qos.py, tos=inherit). Real-time
  queues have HTB priority 0 and a short FIFO; weighted ones share what is left by weight.
  Every leaf's FIFO drops from its head (FIFO), at both ends.

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

from msp_controller.model.config import Edge, Homenet, Uplink
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
MIN_QUEUE_PACKETS = 16
# Every explicit leaf FIFO drops from its head when full. A tail drop makes the enqueue fail,
# the userspace datapath's send of that packet fails with it (ENOBUFS), and OVS 3.1 then
# drops the rest of its output batch to that port, whatever their class: a full bulk queue
# cost the voice behind it. A head drop enqueues the new packet and reports congestion,
# which is not an error to the sender (and tells TCP sooner).
FIFO = "pfifo_head_drop"
# BFD inside a VXLAN tunnel: outer IP (20) + UDP (8) + VXLAN (8) + Ethernet (14), then the
# inner IP's addresses (Open vSwitch's BFD sends from and to 169.254.1.x) and, after its 20
# bytes, the inner UDP destination port, 3784. BFD shares the real-time priority: a BFD
# packet that waits behind bulk for 3 intervals is a false failover (docs/design.md). The
# addresses keep out a host's or the Internet's own UDP to port 3784 (measured: without
# them all of it went into BFD's queue, before everyone's bulk); the ceiling bounds the
# queue's share whatever gets in.
VXLAN_UDP_PORT = 4789
INNER_IP_OFFSET = 50
BFD_PORT_OFFSET = INNER_IP_OFFSET + 22
BFD_UDP_PORT = 3784
BFD_ADDRESSES = ("0xa9fe", "0xffff")  # 169.254.0.0/16 (link-local: never routed to or from a homenet)
CONTROL_KBPS = 256  # guaranteed to BFD
CONTROL_CEIL_KBPS = 4 * CONTROL_KBPS
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
# Leaf class minors inside each tree: the policy's queues from QUEUE_BASE_MINOR + 1 on, then
# the small packets' queue and the control (BFD) queue.
QUEUE_BASE_MINOR = 0x10
SMALL_MINOR = QUEUE_BASE_MINOR + MAX_QUEUES + 1
CONTROL_MINOR = QUEUE_BASE_MINOR + MAX_QUEUES + 2


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


def priority_minors(policy: Policy) -> frozenset[int]:
    """The leaves that carry no bulk: the control queue and the real-time queues (what a
    measurement of bulk's share of the link leaves out)."""
    return frozenset([CONTROL_MINOR] + [QUEUE_BASE_MINOR + index
                                        for index, queue in enumerate(queues(policy), start=1) if queue.realtime])


def leaf_minors() -> range:
    """Every minor a tree's leaves may use."""
    return range(QUEUE_BASE_MINOR + 1, CONTROL_MINOR + 1)


def _kbit(kbps: float) -> str:
    return f"{max(1, int(kbps))}kbit"


def _tos(dscp: int) -> tuple[str, str]:
    return f"0x{dscp << 2:02x}", "0xfc"


def _leaves(dev: str, major: int, block: int, shaped_kbps: float, policy_queues: Sequence[Queue],
            edge: bool) -> tuple[list[Command], list[Command], str]:
    """Leaf classes, their FIFOs and their filters under the shaped class major:<block|1> of
    the HTB qdisc major:; returns (classes and qdiscs, filters, the default leaf's class id).

    The MSPMB's tree (block 0) is alone in its qdisc: its filters are the qdisc's and its
    FIFOs have fixed handles. An edge's homenet has a tree per ISP in one qdisc: each tree's
    filters hang on its shaped class (HTB follows an inner class's own filters), the last
    one catching what no other took, and its FIFOs take handles the kernel allocates (from
    8000: up; a port has 65,535 for all its homenets, so none can be reserved per homenet)."""
    def leaf(minor: int) -> str:
        return f"{major:x}:{block | minor:x}"

    def fifo(minor: int, limit: int) -> Command:
        handle = [] if edge else ["handle", f"{minor:x}:"]
        return ["qdisc", "replace", "dev", dev, "parent", leaf(minor), *handle, FIFO, "limit", str(limit)]

    parent = leaf(1)
    filter_parent = parent if edge else f"{major:x}:"
    realtime_kbps = shaped_kbps * REALTIME_SHARE if any(q.realtime for q in policy_queues) else 0.0
    total_weight = sum(q.weight for q in policy_queues if not q.realtime)
    control, small = leaf(CONTROL_MINOR), leaf(SMALL_MINOR)
    commands: list[Command] = [
        ["class", "replace", "dev", dev, "parent", parent, "classid", control, "htb",
         "rate", _kbit(min(CONTROL_KBPS, shaped_kbps / 10)), "ceil", _kbit(min(CONTROL_CEIL_KBPS, shaped_kbps)),
         "prio", "0", "quantum", str(MTU_BYTES)],
        fifo(CONTROL_MINOR, REALTIME_QUEUE_PACKETS),
        ["class", "replace", "dev", dev, "parent", parent, "classid", small, "htb",
         "rate", _kbit(shaped_kbps * SMALL_SHARE), "ceil", _kbit(shaped_kbps * SMALL_CEIL_SHARE), "prio", "0",
         "quantum", str(MTU_BYTES)],
        fifo(SMALL_MINOR, REALTIME_QUEUE_PACKETS * 4),
    ]
    filters: list[Command] = [
        ["filter", "add", "dev", dev, "parent", filter_parent, "protocol", "ip", "prio", "1", "u32",
         "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(VXLAN_UDP_PORT), "0xffff",
         # u16: a u32 match must sit at a multiple of 4, and the addresses do not.
         "match", "u16", *BFD_ADDRESSES, "at", str(INNER_IP_OFFSET + 12),
         "match", "u16", *BFD_ADDRESSES, "at", str(INNER_IP_OFFSET + 16),
         "match", "u16", str(BFD_UDP_PORT), "0xffff", "at", str(BFD_PORT_OFFSET), "flowid", control],
        # After the DSCP filters (prio 1): a small voice packet stays in its class's queue.
        ["filter", "add", "dev", dev, "parent", filter_parent, "protocol", "ip", "prio", "2", "u32",
         "match", "u16", "0x0000", f"0x{0xFFFF & ~(SMALL_PACKET_BYTES - 1):04x}", "at", "2",
         "flowid", small]]
    default_leaf = ""
    queue_packets = max(MIN_QUEUE_PACKETS, int(shaped_kbps * 1000 / 8 * BULK_QUEUE_MS / 1000) // MTU_BYTES)
    for index, queue in enumerate(policy_queues, start=1):
        classid = leaf(QUEUE_BASE_MINOR + index)
        if queue.realtime:
            rate, prio, limit = realtime_kbps, "0", REALTIME_QUEUE_PACKETS
        else:
            rate, prio, limit = (shaped_kbps - realtime_kbps) * queue.weight / total_weight, "1", queue_packets
        commands.append(["class", "replace", "dev", dev, "parent", parent, "classid", classid, "htb",
                         "rate", _kbit(rate), "ceil", _kbit(shaped_kbps), "prio", prio,
                         "quantum", str(MTU_BYTES * max(1, queue.weight if not queue.realtime else 1))])
        commands.append(fifo(QUEUE_BASE_MINOR + index, limit))
        if not queue.dscps:
            default_leaf = classid
        for dscp in queue.dscps:
            filters.append(["filter", "add", "dev", dev, "parent", filter_parent, "protocol", "ip", "prio", "1",
                            "u32", "match", "ip", "tos", *_tos(dscp), "flowid", classid])
    if edge:  # HTB's default is one per qdisc: each tree names its own
        filters.append(["filter", "add", "dev", dev, "parent", filter_parent, "protocol", "ip", "prio", "3",
                        "u32", "match", "u32", "0", "0", "flowid", default_leaf])
    return commands, filters, default_leaf


def clear_commands(dev: str) -> list[Command]:
    """Remove a port's shaping (fails harmlessly when it has none)."""
    return [["qdisc", "del", "dev", dev, "root"]]


def mspmb_shaping(policy: Policy, uplink: Uplink) -> list[Command]:
    """Upstream shaping on one uplink's port of the MSPMB; none when the ISP's up rate is unknown.
    An HTB qdisc 1: at the root, its one class 1:1 at the shaped rate, the policy's leaves inside."""
    up = policy.isp_rates(uplink.name).up_kbps
    if up is None:
        return []
    dev, shaped = uplink.port, up * SHAPE_FRACTION
    leaves, filters, default_leaf = _leaves(dev, 1, 0, shaped, queues(policy), edge=False)
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", default_leaf.split(":")[1]],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
         "rate", _kbit(shaped), "ceil", _kbit(shaped), *INNER_QUANTUM],
        *leaves, *filters,
    ]


# -- the edge: one fragment per homenet
#
# Downstream, an edge's underlay port carries every homenet's tunnels. Each homenet gets a
# class at the root (1:<major>) holding its own HTB qdisc (<major>:); inside, one tree per ISP
# with a down rate: a class at that rate (<major>:<slot block>01) and the policy's leaves
# under it, each with a head-drop FIFO. The root picks the homenet with one u32 filter per
# (homenet, ISP) in a hash table keyed by the low byte of the VXLAN key, matching the key and
# the outer source (the edge's address for that ISP's slot); the homenet's qdisc picks the ISP
# by the outer source, then that ISP's class picks the leaf. So a homenet's change touches
# only its own classes and filters, a renumbered uplink touches none, and a packet is
# classified in a bucket of about N/256 filters rather than a list of N.
#
# Handles: a homenet's qdisc is id + 1, below 8000: where the kernel allocates the FIFOs'
# own. A port has 65,535 qdisc handles in all: ids up to 32,766 and 32,768 FIFOs, which is
# 8,192 homenet-ISP pairs of a policy with one voice class (4 leaves each). Past that the
# edge's shaper stops asking for FIFOs (box/edge_shaper.py, KERNEL_FIFO_BUDGET) and those
# leaves keep HTB's own, a tail-drop FIFO of the port's txqueuelen: still shaped and
# prioritised, but a full queue's drop there makes the switch drop the rest of its send
# batch (see FIFO).

EDGE_HASH_TABLE = 0x2  # the u32 hash table's handle at the root
EDGE_BUCKETS = 256
VNI_OFFSET = 32  # outer IP (20) + UDP (8) + VXLAN flags (4): the 24-bit key, then a reserved byte
MAX_UPLINK_SLOTS = 4
FIRST_KERNEL_HANDLE = 0x8000  # the kernel allocates unnamed qdiscs' handles above this
MAX_SHAPED_HOMENET_ID = FIRST_KERNEL_HANDLE - 2  # 32,766: a homenet's qdisc handle is its id + 1


def edge_homenet_major(homenet_id: int) -> int:
    """The homenet's class minor at the root and its own qdisc's major."""
    if not 1 <= homenet_id <= MAX_SHAPED_HOMENET_ID:
        raise ValueError(f"homenet id {homenet_id}: the edge shapes ids 1-{MAX_SHAPED_HOMENET_ID}")
    return homenet_id + 1


def edge_pair_ids(homenet_id: int, slot: int) -> tuple[int, int]:
    """(the homenet's qdisc major, the ISP's block of minors in it): the ISP's shaped class
    is <major>:<block|1>, its leaves <major>:<block|leaf minor>."""
    if not 0 <= slot < MAX_UPLINK_SLOTS:
        raise ValueError(f"slot {slot}: the edge shapes at most {MAX_UPLINK_SLOTS} ISPs per homenet")
    return edge_homenet_major(homenet_id), (slot + 1) << 8


def edge_pair_class(homenet_id: int, slot: int) -> str:
    """The class shaped at one ISP's down rate for one homenet."""
    major, block = edge_pair_ids(homenet_id, slot)
    return f"{major:x}:{block | 1:x}"


def _hash_handle(homenet_id: int, slot: int) -> tuple[str, str]:
    """(the pair's filter handle, its bucket): the bucket is the key's low byte, the node id
    what is left of the key and the slot (unique within the bucket, never 0)."""
    bucket = homenet_id % EDGE_BUCKETS
    node = (homenet_id // EDGE_BUCKETS) * MAX_UPLINK_SLOTS + slot + 1
    return f"{EDGE_HASH_TABLE:x}:{bucket:x}:{node:x}", f"{EDGE_HASH_TABLE:x}:{bucket:x}:"


def edge_base_shaping(dev: str) -> list[Command]:
    """Once per edge port: the root, its unshaped default class and the hash table that
    the homenets' filters go into."""
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", f"{UNSHAPED_MINOR:x}"],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", f"1:{UNSHAPED_MINOR:x}", "htb",
         "rate", _kbit(UNSHAPED_KBIT), *INNER_QUANTUM],
        ["filter", "add", "dev", dev, "parent", "1:", "prio", "1", "handle", f"{EDGE_HASH_TABLE:x}:",
         "protocol", "ip", "u32", "divisor", str(EDGE_BUCKETS)],
        ["filter", "add", "dev", dev, "parent", "1:", "prio", "1", "protocol", "ip", "u32", "ht", "800::",
         "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(VXLAN_UDP_PORT), "0xffff",
         "hashkey", "mask", "0x0000ff00", "at", str(VNI_OFFSET), "link", f"{EDGE_HASH_TABLE:x}:"],
    ]


def edge_homenet_shaping(edge: Edge, homenet: Homenet, policy: Policy) -> list[Command]:
    """One homenet's downstream shaping at an edge's underlay port: each ISP with a down rate
    at 97 % of it, the policy's classes inside; an ISP without one is not shaped. Apply after
    edge_base_shaping, to a homenet that has none yet: a change is edge_homenet_update."""
    dev = edge.underlay_port
    shaped = [(uplink, down * SHAPE_FRACTION) for uplink in homenet.uplinks
              if (down := policy.isp_rates(uplink.name).down_kbps) is not None]
    if not shaped:
        return []
    major, policy_queues = edge_homenet_major(homenet.id), queues(policy)
    total = sum(rate for _, rate in shaped)
    trees: list[Command] = []
    routing: list[Command] = []
    defaults: list[str] = []
    for uplink, rate in shaped:
        _, block = edge_pair_ids(homenet.id, uplink.slot)
        pair = edge_pair_class(homenet.id, uplink.slot)
        source = f"{edge.tunnel_ip(uplink.slot)}/32"
        leaves, filters, default_leaf = _leaves(dev, major, block, rate, policy_queues, edge=True)
        defaults.append(default_leaf)
        trees += [["class", "replace", "dev", dev, "parent", f"{major:x}:", "classid", pair, "htb",
                   "rate", _kbit(rate), "ceil", _kbit(rate), *INNER_QUANTUM], *leaves, *filters]
        handle, bucket = _hash_handle(homenet.id, uplink.slot)
        routing += [
            ["filter", "add", "dev", dev, "parent", f"{major:x}:", "protocol", "ip", "prio", "1", "u32",
             "match", "ip", "src", source, "flowid", pair],
            # The root's filter for this pair, replaced by its handle.
            ["filter", "replace", "dev", dev, "parent", "1:", "prio", "1", "protocol", "ip", "handle", handle,
             "u32", "ht", bucket, "match", "u32", f"0x{homenet.id << 8:08x}", "0xffffff00", "at", str(VNI_OFFSET),
             "match", "ip", "src", source, "flowid", f"1:{major:x}"]]
    return [
        ["class", "replace", "dev", dev, "parent", "1:", "classid", f"1:{major:x}", "htb",
         "rate", _kbit(total), "ceil", _kbit(total), *INNER_QUANTUM],
        # Its default is never used (every packet matches one ISP's source): its first ISP's bulk.
        ["qdisc", "replace", "dev", dev, "parent", f"1:{major:x}", "handle", f"{major:x}:", "htb",
         "default", defaults[0].split(":")[1]],
        *trees, *routing,
    ]


def edge_homenet_unshaping(edge: Edge, homenet: Homenet) -> list[Command]:
    """Remove a homenet's downstream shaping (each command fails harmlessly when that ISP
    was not shaped: run them with `tc -force -batch`). Its root filters first: a class a
    filter points at cannot be deleted; deleting the class takes its qdisc, trees and FIFOs."""
    dev = edge.underlay_port
    commands = [["filter", "del", "dev", dev, "parent", "1:", "prio", "1", "protocol", "ip",
                 "handle", _hash_handle(homenet.id, uplink.slot)[0], "u32"] for uplink in homenet.uplinks]
    return commands + [["class", "del", "dev", dev, "classid", f"1:{edge_homenet_major(homenet.id):x}"]]


def edge_homenet_update(edge: Edge, homenet: Homenet, policy: Policy) -> list[Command]:
    """A homenet's new policy at an edge: its pairs removed, then built again (`tc -force
    -batch`: the removals of pairs that were not shaped fail harmlessly)."""
    return edge_homenet_unshaping(edge, homenet) + edge_homenet_shaping(edge, homenet, policy)
