"""Traffic classes in OpenFlow: a class's packet match as flow matches, its choice as a group."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ..choice import DirectionChoice
from ..config import IPNetwork
from ..ofmsg import Bucket, Group, Output
from ..paths import TunnelPath
from ..policy import PROTOCOL_NAMES, PacketMatch
from ..portranges import PortRange, range_to_masks
from .common import ETH_IPV4, ETH_IPV6

PRIO_CLASS = 150  # above the default route (100), below host-to-host and neighbour flows
FULL_PORT_MASK = 0xFFFF


def group_id(homenet_id: int, choice: DirectionChoice) -> int:
    # Egress groups live at the MSPMB, ingress groups at the edge; the bit keeps them apart.
    return (homenet_id << 8) | (0x80 if choice.direction == "ingress" else 0) | (choice.index + 1)


def class_group(homenet_id: int, choice: DirectionChoice, port_of: Callable[[TunnelPath], int | None]) -> Group:
    """Failover and sla: a fast-failover group in preference order; balance: a select group."""
    buckets = []
    for position, path in enumerate(choice.paths):
        port = port_of(path)
        if port is None:
            continue
        weight = choice.weights[position] if choice.mode == "balance" else 0
        buckets.append(Bucket((Output(port),), watch_port=port, weight=weight))
    return Group(group_id(homenet_id, choice), "select" if choice.mode == "balance" else "ff", tuple(buckets))


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
