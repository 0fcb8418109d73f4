"""The MSPMB (br-home): route hosts' packets into tunnels, deliver tunnel packets to hosts."""
from __future__ import annotations

from ..config import Homenet, MspConfig, mspmb_tunnel_port
from ..ofmsg import CONTROLLER, Bucket, DecTtl, Flow, Group, Output, SetField, ToGroup, match
from ..paths import PathPlan
from ..pipeline import MSPMB_CLASSIFY, MSPMB_DELIVER, MSPMB_EGRESS
from .common import (ETH_IPV4, ETH_IPV6, PRIO_ADMIT, PRIO_ROUTE, PRIO_SPECIFIC, PortNumbers,
                     SwitchProgram, neighbor_punts, prefix_match)


def egress_group_id(homenet: Homenet) -> int:
    return (homenet.id << 8) | 0x01


def mspmb_program(config: MspConfig, homenet: Homenet, ports: PortNumbers, plan: PathPlan) -> SwitchProgram:
    lan_ports = [ports[name] for name in homenet.lan_ports if name in ports]
    tunnel_ports = {path: ports[mspmb_tunnel_port(config.edge(path.edge), homenet.uplink(path.uplink))]
                    for path in plan.egress
                    if mspmb_tunnel_port(config.edge(path.edge), homenet.uplink(path.uplink)) in ports}
    flows: list[Flow] = []
    for port in lan_ports:
        flows += neighbor_punts(MSPMB_CLASSIFY, port)
        # Anti-spoofing: hosts may only send from the homenet's prefixes, to the gateway.
        for prefix in homenet.prefixes:
            flows.append(Flow(MSPMB_CLASSIFY, PRIO_ADMIT,
                              match(in_port=port, eth_dst=homenet.gateway_mac, **prefix_match(prefix, "src")),
                              goto=MSPMB_EGRESS))
    for port in sorted(set(tunnel_ports.values())):
        for prefix in homenet.prefixes:
            flows.append(Flow(MSPMB_CLASSIFY, PRIO_ADMIT, match(in_port=port, **prefix_match(prefix, "dst")),
                              goto=MSPMB_DELIVER))

    group = Group(egress_group_id(homenet), "ff", tuple(
        Bucket((Output(tunnel_ports[path]),), watch_port=tunnel_ports[path])
        for path in plan.egress if path in tunnel_ports))
    for prefix in homenet.prefixes:
        # Host to host inside the homenet never leaves the box.
        flows.append(Flow(MSPMB_EGRESS, PRIO_SPECIFIC, match(**prefix_match(prefix, "dst")), goto=MSPMB_DELIVER))
    for eth_type in (ETH_IPV4, ETH_IPV6):
        # The MSP as a whole is one router hop: the TTL drops here on the way out.
        flows.append(Flow(MSPMB_EGRESS, PRIO_ROUTE, match(eth_type=eth_type),
                          (DecTtl(), SetField("eth_src", homenet.gateway_mac), ToGroup(group.group_id))))
    # No neighbour entry yet: the controller resolves the host (and drops this packet).
    flows.append(Flow(MSPMB_DELIVER, 0, match(), (Output(CONTROLLER),)))
    return SwitchProgram(flows=tuple(flows), groups=(group,))


def host_flow(homenet: Homenet, ip: str, mac: str, port: int, idle_timeout: int) -> Flow:
    """Deliver packets for one learned host (a neighbour entry, aged out when idle)."""
    if ":" in ip:
        fields = match(eth_type=ETH_IPV6, ipv6_dst=ip)
    else:
        fields = match(eth_type=ETH_IPV4, ipv4_dst=ip)
    return Flow(MSPMB_DELIVER, PRIO_ROUTE, fields,
                (SetField("eth_src", homenet.gateway_mac), SetField("eth_dst", mac), Output(port)),
                idle_timeout=idle_timeout, learned=True)
