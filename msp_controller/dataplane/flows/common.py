"""Pieces shared by the per-role flow compilers."""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from msp_controller.dataplane.meters import Meter, PuntReason
from msp_controller.dataplane.ofmsg import CONTROLLER, Flow, Group, Output, match

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 17, 58
ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 135, 136
BFD_UDP_PORT = 3784  # BFD control packets (RFC 5881), as Open vSwitch sends them in a tunnel
# Open vSwitch's BFD goes from 169.254.1.1 to 169.254.1.0 (link-local): no host can send from
# there (the MSPMB admits only the homenet's prefixes), so no host's packet passes for BFD.
BFD_ADDRESSES = ("169.254.0.0", "255.255.0.0")

# Priorities: neighbour protocol above admission above routes.
PRIO_PROBE = 400
PRIO_NEIGHBOR = 300
PRIO_SPECIFIC = 300
PRIO_ADMIT = 200
PRIO_ROUTE = 100

PortNumbers = Mapping[str, int]  # a switch's port names and their OpenFlow numbers


@dataclass(frozen=True, slots=True)
class SwitchProgram:
    """Everything the controller wants one switch to hold (learned neighbours aside)."""

    flows: tuple[Flow, ...] = ()
    groups: tuple[Group, ...] = field(default_factory=tuple)
    meters: tuple[Meter, ...] = ()


@functools.lru_cache(maxsize=1 << 16)
def prefix_match(network: ipaddress.IPv4Network | ipaddress.IPv6Network, field_name: str) -> dict[str, object]:
    """Match kwargs for "address inside network" on ipv4_src/dst or ipv6_src/dst (shared: a
    homenet's prefix is in many of its flows; callers spread it, never change it)."""
    family = "ipv4" if network.version == 4 else "ipv6"
    value: object = str(network.network_address)
    if network.prefixlen != network.max_prefixlen:
        value = (str(network.network_address), str(network.netmask))
    return {"eth_type": ETH_IPV4 if network.version == 4 else ETH_IPV6, f"{family}_{field_name}": value}


def neighbor_punts(table: int, in_port: int) -> list[Flow]:
    """Send ARP and IPv6 neighbour solicitations/advertisements from a port to the controller."""
    to_controller = (Output(CONTROLLER),)
    meter = PuntReason.NEIGHBOR.value
    return [
        Flow(table, PRIO_NEIGHBOR, match(in_port=in_port, eth_type=ETH_ARP), to_controller, meter=meter),
        *(Flow(table, PRIO_NEIGHBOR, match(in_port=in_port, eth_type=ETH_IPV6, ip_proto=IPPROTO_ICMPV6,
                                           icmpv6_type=icmp_type), to_controller, meter=meter)
          for icmp_type in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT)),
    ]
