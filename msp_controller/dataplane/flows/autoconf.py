"""The MSPMB's controller-bound flows for host autoconfiguration: DHCP from clients and
router solicitations, from each LAN port. All of them, and only they, sit at PRIO_AUTOCONF
in the classify table, so a meter for them is added here, in one place."""
from __future__ import annotations

from msp_controller.dataplane.flows.common import ETH_IPV4, ETH_IPV6, IPPROTO_ICMPV6, IPPROTO_UDP
from msp_controller.dataplane.meters import PuntReason
from msp_controller.dataplane.ofmsg import CONTROLLER, Flow, Output, match

# Above admission (200: a renewal, unicast to the gateway from a leased address, would
# otherwise be routed) and neighbour discovery (300), below probes (400).
PRIO_AUTOCONF = 310
DHCP_CLIENT_PORT, DHCP_SERVER_PORT = 68, 67
ND_ROUTER_SOLICIT = 133


def autoconf_punts(table: int, in_port: int) -> list[Flow]:
    """DHCP (UDP 68 -> 67) and router solicitations from one LAN port to the controller."""
    to_controller = (Output(CONTROLLER),)
    meter = PuntReason.AUTOCONF.value
    return [
        Flow(table, PRIO_AUTOCONF, match(in_port=in_port, eth_type=ETH_IPV4, ip_proto=IPPROTO_UDP,
                                         udp_src=DHCP_CLIENT_PORT, udp_dst=DHCP_SERVER_PORT),
             to_controller, meter=meter),
        Flow(table, PRIO_AUTOCONF, match(in_port=in_port, eth_type=ETH_IPV6, ip_proto=IPPROTO_ICMPV6,
                                         icmpv6_type=ND_ROUTER_SOLICIT), to_controller, meter=meter),
    ]
