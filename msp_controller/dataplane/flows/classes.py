"""Traffic classes in OpenFlow: a class's packet match as flow matches, its choice as groups."""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from msp_controller.dataplane.flows.common import ETH_IPV4, ETH_IPV6, PRIO_ROUTE
from msp_controller.dataplane.ofmsg import (
    MAX_MULTIPATH_LINKS,
    Action,
    Bucket,
    Flow,
    Group,
    Multipath,
    Output,
    SetField,
    ToGroup,
    match,
)
from msp_controller.dataplane.pipeline import BALANCE_TAG
from msp_controller.decide.choice import DirectionChoice
from msp_controller.decide.paths import TunnelPath
from msp_controller.model.config import IPNetwork
from msp_controller.model.policy import BALANCE, PROTOCOL_NAMES, PacketMatch
from msp_controller.model.portranges import PortRange, range_to_masks

PRIO_CLASS = 150  # above the default route (100), below host-to-host and neighbour flows
FULL_PORT_MASK = 0xFFFF
LINK_BITS = 8  # BALANCE_TAG holds the class's group id above the hash link
PATH_GROUP_SHIFT = 24  # a balanced path's group: (position + 1) << 24 | the class's group id



@dataclass(frozen=True)
class TunnelExit:
    """A tunnel port shared by many tunnels (an edge's flow-based port), and the actions
    that pick one of them (the VXLAN key and remote address) before the packet leaves."""

    port: int
    actions: tuple[Action, ...]


# This switch's way out for a path: a port of its own, a shared tunnel port, or None if
# the path does not pass here.
PortOf = Callable[[TunnelPath], "int | TunnelExit | None"]
# The paths a group may use, when the switch cannot tell a dead tunnel itself (an edge's
# tunnels carry no BFD: the controller relays the MSPMB's verdict); None: every path.
Live = Collection[TunnelPath] | None


@dataclass(frozen=True)
class ClassForwarding:
    """How a class's flows hand packets on: the actions that end them, the table they go to
    next, and the groups and flows (of that table) that this needs."""

    actions: tuple[Action, ...]
    goto: int | None
    groups: tuple[Group, ...]
    flows: tuple[Flow, ...]


def group_id(homenet_id: int, choice: DirectionChoice) -> int:
    # Egress groups live at the MSPMB, ingress groups at the edge; the bit keeps them apart.
    return (homenet_id << 8) | (0x80 if choice.direction == "ingress" else 0) | (choice.index + 1)


def _failover_group(gid: int, paths: Sequence[TunnelPath], port_of: PortOf, live: Live,
                    damped: Collection[TunnelPath] = ()) -> Group:
    usable = [(path, port) for path in paths
              if (port := port_of(path)) is not None and (live is None or path in live)]
    # Where the controller tells liveness (live given), a damped path is left out while a
    # trusted one remains: it could not take over faster than the controller anyway, and a
    # flapping path then costs no group change. Elsewhere BFD keeps it as the last resort.
    trusted = [(path, port) for path, port in usable if path not in damped] if live is not None else usable
    return Group(gid, "ff", tuple(_bucket(way) for _, way in (trusted or usable)))


def _bucket(way: int | TunnelExit) -> Bucket:
    if isinstance(way, TunnelExit):
        return Bucket((*way.actions, Output(way.port)), watch_port=way.port)
    return Bucket((Output(way),), watch_port=way)


def hash_links(weights: Sequence[int]) -> tuple[int, ...]:
    """For each multipath link, the index of its path: links shared in proportion to weights."""
    shares = [w // math.gcd(*weights) for w in weights]
    total = sum(shares)
    if total > MAX_MULTIPATH_LINKS:
        shares = [max(1, round(s * MAX_MULTIPATH_LINKS / total)) for s in shares]
        while sum(shares) > MAX_MULTIPATH_LINKS:
            shares[shares.index(max(shares))] -= 1
    return tuple(index for index, share in enumerate(shares) for _ in range(share))


def _balance(homenet_id: int, choice: DirectionChoice, port_of: PortOf, balance_table: int,
             live: Live) -> ClassForwarding:
    here = [(position, path) for position, path in enumerate(choice.paths) if port_of(path) is not None]
    if not here:
        return ClassForwarding((), None, (), ())
    # Spread over one edge's paths: the chosen edge at the MSPMB, the switch's own at an edge.
    edge = here[0][1].edge
    spread = [path for _, path in here if path.edge == edge]
    others = [path for _, path in here if path.edge != edge]
    weights = [choice.weights[position] for position, path in here if path.edge == edge]
    base = group_id(homenet_id, choice)
    # One fast-failover group per spread path: its own tunnel while live, then the next
    # (rotating, so a dead path's flows do not all land on one), then the other edges.
    # Dead paths keep their hash links (flows on live paths stay put); their groups skip them.
    # A damped path (flap damping) comes last in every group, its own included, until trusted.
    groups = tuple(_failover_group(((k + 1) << PATH_GROUP_SHIFT) | base,
                                   sorted(spread[k:] + spread[:k] + others, key=lambda p: p in choice.damped),
                                   port_of, live, choice.damped)
                   for k in range(len(spread)))
    links = hash_links(weights)
    tag = base << LINK_BITS
    flows = tuple(Flow(balance_table, PRIO_ROUTE, match(**{BALANCE_TAG: tag | link}), (ToGroup(groups[k].group_id),))
                  for link, k in enumerate(links))
    return ClassForwarding((SetField(BALANCE_TAG, tag), Multipath(len(links), BALANCE_TAG, LINK_BITS)),
                           balance_table, groups, flows)


def class_forwarding(homenet_id: int, choice: DirectionChoice, port_of: PortOf,
                     balance_table: int, live: Live = None) -> ClassForwarding:
    """Failover and sla: one fast-failover group in preference order. Balance: a hash of the
    flow's 5-tuple picks a path by weight (multipath into a tag, then balance_table), and
    that path's fast-failover group keeps the flow there while the path is live."""
    if choice.mode == BALANCE:
        return _balance(homenet_id, choice, port_of, balance_table, live)
    group = _failover_group(group_id(homenet_id, choice), choice.paths, port_of, live, choice.damped)
    return ClassForwarding((ToGroup(group.group_id),), None, (group,), ())


def _port_matches(ranges: Sequence[PortRange]) -> list[object]:
    values: list[object] = []
    for port_range in ranges:
        for value, mask in range_to_masks(port_range.low, port_range.high):
            values.append(value if mask == FULL_PORT_MASK else (value, mask))
    return values or [None]


def _nets(nets: Sequence[IPNetwork], version: int, fallback: Sequence[IPNetwork]) -> list[IPNetwork | None]:
    if nets:
        return [n for n in nets if n.version == version]
    chosen = [n for n in fallback if n.version == version]
    return list(chosen) if fallback else [None]


def _prefix_value(net: IPNetwork) -> object:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def flow_matches(match: PacketMatch, dst_fallback: Sequence[IPNetwork] = ()) -> list[dict[str, object]]:
    """OpenFlow match fields covering exactly the packets of a class.

    dst_fallback: when the class names no destinations, restrict to these (the homenet's
    prefixes on the way in, so a class never widens what the edge forwards).
    """
    versions = match.ip_versions() if (match.src_nets or match.dst_nets) else (4, 6)
    protocol_name = PROTOCOL_NAMES.get(match.protocol) if match.protocol is not None else None
    results: list[dict[str, object]] = []
    for version in versions:
        family = "ipv4" if version == 4 else "ipv6"
        sources = _nets(match.src_nets, version, ())
        destinations = _nets(match.dst_nets, version, dst_fallback)
        if not sources or not destinations:
            continue
        for source in sources:
            for destination in destinations:
                for src_port in _port_matches(match.src_ports):
                    for dst_port in _port_matches(match.dst_ports):
                        fields: dict[str, object] = {"eth_type": ETH_IPV4 if version == 4 else ETH_IPV6}
                        if source is not None:
                            fields[f"{family}_src"] = _prefix_value(source)
                        if destination is not None:
                            fields[f"{family}_dst"] = _prefix_value(destination)
                        if match.protocol is not None:
                            # ICMP is protocol 1 for IPv4 only; "icmp" means icmpv6 on IPv6.
                            protocol = 58 if (match.protocol == 1 and version == 6) else match.protocol
                            fields["ip_proto"] = protocol
                        if match.dscp is not None:
                            fields["ip_dscp"] = match.dscp
                        if src_port is not None:
                            fields[f"{protocol_name}_src"] = src_port
                        if dst_port is not None:
                            fields[f"{protocol_name}_dst"] = dst_port
                        results.append(fields)
    return results
