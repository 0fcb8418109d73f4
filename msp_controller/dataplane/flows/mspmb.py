"""The MSPMB (br-home): route hosts' packets into tunnels, deliver tunnel packets to hosts."""
from __future__ import annotations

from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.dataplane.flows.autoconf import autoconf_punts
from msp_controller.dataplane.flows.classes import PRIO_CLASS, class_forwarding, flow_matches
from msp_controller.dataplane.flows.common import (
    ETH_IPV4,
    ETH_IPV6,
    IPPROTO_UDP,
    PRIO_ADMIT,
    PRIO_PROBE,
    PRIO_ROUTE,
    PRIO_SPECIFIC,
    PortNumbers,
    SwitchProgram,
    neighbor_punts,
    prefix_match,
)
from msp_controller.dataplane.flows.qos import class_meter, marking
from msp_controller.dataplane.meters import PuntReason
from msp_controller.dataplane.ofmsg import CONTROLLER, DecTtl, Flow, Group, Output, SetField, match
from msp_controller.dataplane.pipeline import MSPMB_BALANCE, MSPMB_CLASSIFY, MSPMB_DELIVER, MSPMB_EGRESS
from msp_controller.dataplane.probe_packet import PROBE_UDP_PORT
from msp_controller.decide.choice import DirectionChoice
from msp_controller.decide.paths import TunnelPath
from msp_controller.model.config import Homenet, MspConfig, mspmb_tunnel_port


def mspmb_program(config: MspConfig, homenet: Homenet, ports: PortNumbers,
                  egress: tuple[DirectionChoice, ...]) -> SwitchProgram:
    def port_of(path: TunnelPath) -> int | None:
        return ports.get(mspmb_tunnel_port(config.edge(path.edge), homenet.uplink(path.uplink)))

    lan_ports = [ports[name] for name in homenet.lan_ports if name in ports]
    tunnel_ports = sorted({port for choice in egress for path in choice.paths
                           if (port := port_of(path)) is not None})
    flows: list[Flow] = []
    for port in lan_ports:
        flows += neighbor_punts(MSPMB_CLASSIFY, port)
        if homenet.autoconf is not None and homenet.autoconf.enabled:
            flows += autoconf_punts(MSPMB_CLASSIFY, port)  # DHCP and router solicitations
        # Anti-spoofing: hosts may only send from the homenet's prefixes, to the gateway.
        for prefix in homenet.prefixes:
            flows.append(Flow(MSPMB_CLASSIFY, PRIO_ADMIT,
                              match(in_port=port, eth_dst=homenet.gateway_mac, **prefix_match(prefix, "src")),
                              goto=MSPMB_EGRESS))
    for port in tunnel_ports:
        # The MSP's probes come back the way they came: that round trip is the path's RTT.
        flows.append(Flow(MSPMB_CLASSIFY, PRIO_PROBE,
                          match(in_port=port, eth_type=ETH_IPV4, ip_proto=IPPROTO_UDP, udp_dst=PROBE_UDP_PORT),
                          (Output(ofp.OFPP_IN_PORT),)))
        for prefix in homenet.prefixes:
            flows.append(Flow(MSPMB_CLASSIFY, PRIO_ADMIT, match(in_port=port, **prefix_match(prefix, "dst")),
                              goto=MSPMB_DELIVER))

    for prefix in homenet.prefixes:
        # Host to host inside the homenet never leaves the box.
        flows.append(Flow(MSPMB_EGRESS, PRIO_SPECIFIC, match(**prefix_match(prefix, "dst")), goto=MSPMB_DELIVER))
    groups: list[Group] = []
    for choice in egress:
        forwarding = class_forwarding(homenet.id, choice, port_of, MSPMB_BALANCE)
        groups += forwarding.groups
        flows += forwarding.flows
        # The MSP as a whole is one router hop: the TTL drops here on the way out.
        actions = (DecTtl(), SetField("eth_src", homenet.gateway_mac), *marking(choice),
                   *forwarding.actions)
        meter = class_meter(homenet.id, choice)
        limit = None if meter is None else meter.meter_id
        if choice.match is None:
            for eth_type in (ETH_IPV4, ETH_IPV6):
                flows.append(Flow(MSPMB_EGRESS, PRIO_ROUTE, match(eth_type=eth_type), actions,
                                  goto=forwarding.goto, meter=limit))
        else:
            for fields in flow_matches(choice.match):
                flows.append(Flow(MSPMB_EGRESS, PRIO_CLASS, match(**fields), actions,
                                  goto=forwarding.goto, meter=limit))
    # No neighbour entry yet: the controller resolves the host (and drops this packet).
    flows.append(Flow(MSPMB_DELIVER, 0, match(), (Output(CONTROLLER),), meter=PuntReason.UNRESOLVED.value))
    meters = tuple(m for c in egress if (m := class_meter(homenet.id, c)) is not None)
    return SwitchProgram(flows=tuple(flows), groups=tuple(groups), meters=meters)


def host_flow(homenet: Homenet, ip: str, mac: str, port: int, idle_timeout: int) -> Flow:
    """Deliver packets for one learned host (a neighbour entry, aged out when idle)."""
    if ":" in ip:
        fields = match(eth_type=ETH_IPV6, ipv6_dst=ip)
    else:
        fields = match(eth_type=ETH_IPV4, ipv4_dst=ip)
    return Flow(MSPMB_DELIVER, PRIO_ROUTE, fields,
                (SetField("eth_src", homenet.gateway_mac), SetField("eth_dst", mac), Output(port)),
                idle_timeout=idle_timeout, learned=True)
