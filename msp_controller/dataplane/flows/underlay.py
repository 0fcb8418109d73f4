"""Underlay bridges: admit from the outside only what a tunnel endpoint needs."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.dataplane.flows.common import (
    ETH_ARP,
    ETH_IPV4,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    PRIO_ADMIT,
    SwitchProgram,
)
from msp_controller.dataplane.ofmsg import Flow, Output, match

VXLAN_PORT = 4789
DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68


def underlay_program(outside_port: int,
                     tunnel_sources: Iterable[ipaddress.IPv4Address] | None,
                     tunnel_destinations: Iterable[ipaddress.IPv4Address] | None = None,
                     dhcp_client: bool = False) -> SwitchProgram:
    """Flows for a bridge whose LOCAL port holds tunnel addresses and one outside port.

    tunnel_sources: the only peers whose VXLAN packets are admitted (None: any peer).
    tunnel_destinations: our tunnel addresses (None: any, e.g. an ISP-assigned address).
    Everything else from outside misses the table and is dropped; all that the box itself
    sends (tunnel packets, ARP, BFD) leaves.
    """
    local = ofp.OFPP_LOCAL
    to_local = (Output(local),)
    flows = [
        Flow(0, PRIO_ADMIT, match(in_port=local), (Output(outside_port),)),
        Flow(0, PRIO_ADMIT, match(in_port=outside_port, eth_type=ETH_ARP), to_local),
        # Errors and echo replies about our own tunnel packets (path MTU, diagnostics).
        Flow(0, PRIO_ADMIT, match(in_port=outside_port, eth_type=ETH_IPV4, ip_proto=IPPROTO_ICMP), to_local),
    ]
    sources = [None] if tunnel_sources is None else list(tunnel_sources)
    destinations = [None] if tunnel_destinations is None else list(tunnel_destinations)
    for source in sources:
        for destination in destinations:
            fields: dict[str, object] = {"in_port": outside_port, "eth_type": ETH_IPV4,
                                         "ip_proto": IPPROTO_UDP, "udp_dst": VXLAN_PORT}
            if source is not None:
                fields["ipv4_src"] = str(source)
            if destination is not None:
                fields["ipv4_dst"] = str(destination)
            flows.append(Flow(0, PRIO_ADMIT, match(**fields), to_local))
    if dhcp_client:
        # The ISP may hand the uplink its address by DHCP.
        flows.append(Flow(0, PRIO_ADMIT, match(in_port=outside_port, eth_type=ETH_IPV4, ip_proto=IPPROTO_UDP,
                                               udp_src=DHCP_SERVER_PORT, udp_dst=DHCP_CLIENT_PORT), to_local))
    return SwitchProgram(flows=tuple(flows))
