"""An MSP edge (br-msp): check and forward homenet packets to the Internet, and back.

The edge has one flow-based VXLAN port per uplink slot, shared by every homenet: a
homenet's packets are told apart by their VXLAN key and the address of the box's uplink,
and sent back with both set. Its tunnels run no BFD of their own: each BFD packet of the
MSPMB goes straight back to where it came from, in the datapath, so the MSPMB's session
fails when either direction fails, and the edge pays no BFD state per homenet. The
controller relays the MSPMB's verdict: the edge's groups hold only the live paths.
"""
from __future__ import annotations

from collections.abc import Collection

from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.dataplane.flows.classes import PRIO_CLASS, TunnelExit, class_forwarding, flow_matches
from msp_controller.dataplane.flows.common import (
    BFD_ADDRESSES,
    BFD_UDP_PORT,
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
from msp_controller.dataplane.pipeline import EDGE_BALANCE, EDGE_CLASSIFY, EDGE_EGRESS, EDGE_INGRESS
from msp_controller.dataplane.probe_packet import PROBE_UDP_PORT
from msp_controller.decide.choice import DirectionChoice
from msp_controller.decide.paths import TunnelPath
from msp_controller.model.config import Edge, Homenet, MspConfig, Uplink, edge_tunnel_port

# BCP 38 at the Internet port: above the admission flows (PRIO_ADMIT), below the neighbour
# punts (PRIO_NEIGHBOR), so that no two flows of one priority overlap in the table.
PRIO_BCP38 = 250


def tunnel_match(homenet: Homenet, uplink: Uplink, port: int) -> dict[str, object]:
    """Packets of one homenet's uplink at the edge: its slot's port, its key, its address.
    Only the address its ISP gave the box is accepted: another box cannot speak for it."""
    assert uplink.address is not None
    return {"in_port": port, "tunnel_id": homenet.id, "tun_ipv4_src": str(uplink.address)}


def tunnel_exit(homenet: Homenet, uplink: Uplink, port: int) -> TunnelExit:
    """How the edge sends into one homenet's tunnel over one uplink."""
    assert uplink.address is not None
    return TunnelExit(port, (SetField("tunnel_id", homenet.id), SetField("tun_ipv4_dst", str(uplink.address))))


def _tunnel_ports(homenet: Homenet, ports: PortNumbers) -> list[tuple[Uplink, int]]:
    """The uplinks the edge can use: its slot's port exists and the uplink's address is known."""
    return [(uplink, port) for uplink in homenet.uplinks
            if uplink.address is not None and (port := ports.get(edge_tunnel_port(uplink))) is not None]


def edge_homenet_part(config: MspConfig, edge: Edge, homenet: Homenet, ports: PortNumbers,
                      ingress: tuple[DirectionChoice, ...], live: Collection[TunnelPath]) -> SwitchProgram:
    """One homenet's part of an edge's program: its tunnels' admission, its classes' paths.

    Parts of different homenets never share a flow or a group, so each is installed and
    changed on its own."""
    usable = {uplink.name: tunnel_exit(homenet, uplink, port) for uplink, port in _tunnel_ports(homenet, ports)}

    def port_of(path: TunnelPath) -> TunnelExit | None:
        return usable.get(path.uplink) if path.edge == edge.name else None

    flows: list[Flow] = []
    for uplink, port in _tunnel_ports(homenet, ports):
        tunnel = tunnel_match(homenet, uplink, port)
        # The MSPMB's BFD, back the way it came (TTL untouched: BFD insists on 255). Only from
        # and to BFD's own addresses: the box's BFD takes any UDP to its port that comes out of
        # the tunnel, so a host's own would never reach the Internet (its TTL, which the MSPMB
        # lowers, keeps it from touching the session).
        flows.append(Flow(EDGE_CLASSIFY, PRIO_PROBE,
                          match(**tunnel, eth_type=ETH_IPV4, ip_proto=IPPROTO_UDP, udp_dst=BFD_UDP_PORT,
                                ipv4_src=BFD_ADDRESSES, ipv4_dst=BFD_ADDRESSES),
                          (SetField("tun_ipv4_dst", str(uplink.address)), Output(ofp.OFPP_IN_PORT))))
        # Probe replies reflected by the MSPMB: timed by the controller.
        flows.append(Flow(EDGE_CLASSIFY, PRIO_PROBE,
                          match(**tunnel, eth_type=ETH_IPV4, ip_proto=IPPROTO_UDP, udp_dst=PROBE_UDP_PORT),
                          (Output(CONTROLLER),), meter=PuntReason.PROBE.value))
        # Anti-spoofing: a homenet's tunnels carry only its own source addresses.
        for prefix in homenet.prefixes:
            flows.append(Flow(EDGE_CLASSIFY, PRIO_ADMIT, match(**tunnel, **prefix_match(prefix, "src")),
                              goto=EDGE_EGRESS))
    internet = ports.get(edge.internet_port)
    for prefix in homenet.prefixes:
        # To a homenet from a homenet, maybe over the same shared tunnel port: forget where
        # the packet came in, or the switch would refuse to send it back out of that port.
        flows.append(Flow(EDGE_EGRESS, PRIO_SPECIFIC, match(**prefix_match(prefix, "dst")),
                          (SetField("in_port", 0),), goto=EDGE_INGRESS))
        if internet is not None:
            # BCP 38: the homenet's own addresses never come from the Internet (dropped).
            flows.append(Flow(EDGE_CLASSIFY, PRIO_BCP38, match(in_port=internet, **prefix_match(prefix, "src"))))
    groups: list[Group] = []
    for choice in ingress:
        # Every edge gets the class's paths from itself, whichever edge BGP prefers: the
        # Internet may send the homenet's traffic to any edge that announced it.
        forwarding = class_forwarding(homenet.id, choice, port_of, EDGE_BALANCE, live)
        groups += forwarding.groups
        flows += forwarding.flows
        actions = (DecTtl(), SetField("eth_src", edge.internet_mac), SetField("eth_dst", homenet.gateway_mac),
                   *marking(choice), *forwarding.actions)
        meter = class_meter(homenet.id, choice)
        limit = None if meter is None else meter.meter_id
        if choice.match is None:
            for prefix in homenet.prefixes:
                flows.append(Flow(EDGE_INGRESS, PRIO_ROUTE, match(**prefix_match(prefix, "dst")), actions,
                                  goto=forwarding.goto, meter=limit))
        else:
            for fields in flow_matches(choice.match, dst_fallback=homenet.prefixes):
                flows.append(Flow(EDGE_INGRESS, PRIO_CLASS, match(**fields), actions,
                                  goto=forwarding.goto, meter=limit))
    meters = tuple(m for c in ingress if (m := class_meter(homenet.id, c)) is not None)
    return SwitchProgram(flows=tuple(flows), groups=tuple(groups), meters=meters)


def edge_base_program(edge: Edge, ports: PortNumbers) -> SwitchProgram:
    """The edge's own part: the Internet port's neighbour traffic and admission."""
    flows: list[Flow] = []
    internet = ports.get(edge.internet_port)
    if internet is not None:
        flows += neighbor_punts(EDGE_CLASSIFY, internet)
        for eth_type in (ETH_IPV4, ETH_IPV6):
            flows.append(Flow(EDGE_CLASSIFY, PRIO_ADMIT,
                              match(in_port=internet, eth_type=eth_type, eth_dst=edge.internet_mac),
                              goto=EDGE_INGRESS))
    return SwitchProgram(flows=tuple(flows))


def default_route_flow(edge: Edge, internet_port: int, gateway_mac: str, ipv6: bool) -> Flow:
    """Send what leaves for the Internet to the upstream router (a learned neighbour)."""
    return Flow(EDGE_EGRESS, PRIO_ROUTE, match(eth_type=ETH_IPV6 if ipv6 else ETH_IPV4),
                (SetField("eth_src", edge.internet_mac), SetField("eth_dst", gateway_mac),
                 Output(internet_port)), learned=True)
