"""An MSP edge (br-msp): check and forward homenet packets to the Internet, and back."""
from __future__ import annotations

from ..config import Edge, Homenet, MspConfig, edge_tunnel_port
from ..ofmsg import Bucket, DecTtl, Flow, Group, Output, SetField, ToGroup, match
from ..paths import PathPlan
from ..pipeline import EDGE_CLASSIFY, EDGE_EGRESS, EDGE_INGRESS
from .common import (ETH_IPV4, ETH_IPV6, PRIO_ADMIT, PRIO_ROUTE, PRIO_SPECIFIC, PortNumbers,
                     SwitchProgram, neighbor_punts, prefix_match)


def ingress_group_id(homenet: Homenet) -> int:
    return (homenet.id << 8) | 0x81


def _homenet_flows(edge: Edge, homenet: Homenet, ports: PortNumbers, plan: PathPlan) -> tuple[list[Flow], Group]:
    tunnel_ports = {path: ports[edge_tunnel_port(homenet, homenet.uplink(path.uplink))]
                    for path in plan.ingress
                    if path.edge == edge.name and edge_tunnel_port(homenet, homenet.uplink(path.uplink)) in ports}
    flows: list[Flow] = []
    for port in sorted(set(tunnel_ports.values())):
        # Anti-spoofing: a homenet's tunnels carry only its own source addresses.
        for prefix in homenet.prefixes:
            flows.append(Flow(EDGE_CLASSIFY, PRIO_ADMIT, match(in_port=port, **prefix_match(prefix, "src")),
                              goto=EDGE_EGRESS))
    group = Group(ingress_group_id(homenet), "ff", tuple(
        Bucket((Output(tunnel_ports[path]),), watch_port=tunnel_ports[path])
        for path in plan.ingress if path in tunnel_ports))
    for prefix in homenet.prefixes:
        flows.append(Flow(EDGE_EGRESS, PRIO_SPECIFIC, match(**prefix_match(prefix, "dst")), goto=EDGE_INGRESS))
        flows.append(Flow(EDGE_INGRESS, PRIO_ROUTE, match(**prefix_match(prefix, "dst")),
                          (DecTtl(), SetField("eth_src", edge.internet_mac),
                           SetField("eth_dst", homenet.gateway_mac), ToGroup(group.group_id))))
    return flows, group


def edge_program(config: MspConfig, edge: Edge, ports: PortNumbers, plans: dict[str, PathPlan]) -> SwitchProgram:
    flows: list[Flow] = []
    groups: list[Group] = []
    internet = ports.get(edge.internet_port)
    if internet is not None:
        flows += neighbor_punts(EDGE_CLASSIFY, internet)
        for eth_type in (ETH_IPV4, ETH_IPV6):
            flows.append(Flow(EDGE_CLASSIFY, PRIO_ADMIT,
                              match(in_port=internet, eth_type=eth_type, eth_dst=edge.internet_mac),
                              goto=EDGE_INGRESS))
    for homenet in config.homenets:
        if homenet.edge == edge.name:
            homenet_flows, group = _homenet_flows(edge, homenet, ports, plans[homenet.name])
            flows += homenet_flows
            groups.append(group)
    return SwitchProgram(flows=tuple(flows), groups=tuple(groups))


def default_route_flow(edge: Edge, internet_port: int, gateway_mac: str, ipv6: bool) -> Flow:
    """Send what leaves for the Internet to the upstream router (a learned neighbour)."""
    return Flow(EDGE_EGRESS, PRIO_ROUTE, match(eth_type=ETH_IPV6 if ipv6 else ETH_IPV4),
                (SetField("eth_src", edge.internet_mac), SetField("eth_dst", gateway_mac),
                 Output(internet_port)), learned=True)
