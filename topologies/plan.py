"""The reference network's addressing plan: node names, addresses, links and BIRD configs,
derived from an MSP config (etc/reference.toml); the numbering is described in
topologies/reference.py's docstring. No Mininet here.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from msp_controller.model.config import Edge, MspConfig, Uplink
from topologies import control_ns
from topologies.bird import DEFAULT_TIMERS, BgpSession, Channel, RouterConfig, prefix_filter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = "etc/reference.toml"
MGMT_BRIDGE = control_ns.MGMT_BRIDGE
UNDERLAY_MTU = 1500
OVERLAY_MTU = 1450  # VXLAN over IPv4 takes 50 bytes of the underlay's 1500
# An unused RFC 2544 benchmarking address: a management network that does not clash with
# the host (on some machines the root namespace itself sits in 192.0.2.0/24).
SPARE_CONTROLLER_ADDRESS = "198.19.0.1"
MSPMB = "mspmb"
INET = "inet"
SERVER = "server"
INET_ASN = 64496  # inet, the transit provider (RFC 5398 documentation AS)
UPSTREAM_ASN_BASE = 64500  # up<n> of an edge without bgp_neighbors gets AS 64500+n
# Metric of the opt-in static routes to the PI prefixes (static_pi_routes): above BIRD's
# (32), so a route learned by BGP always wins over them.
STATIC_PI_METRIC = 2000
# The session to the controller: a controller that dies closes it at once (TCP); the hold
# time only catches a hung one, and leaves room for a busy eventlet loop (Ryu keeps
# alive every third of the negotiated hold time).
CONTROLLER_SESSION_TIMERS = ("hold time 30", *(t for t in DEFAULT_TIMERS if not t.startswith(("hold", "keepalive"))))
# An upstream router prefers what its customer (the MSP) announces over the same prefix
# heard back through inet: the backup edge's prepended path (65000 65000 65000) is as long
# as the one through inet (64496 64501 65000), and BGP's last tie-breaker (lowest router
# id) would pick inet's, so up2 would never announce the backup path.
CUSTOMER_LOCAL_PREF = 200


def resolve_config_path(path: str) -> str:
    """A relative path is tried from the current directory, then from the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else os.path.abspath(path)


def _iface(network: ipaddress.IPv4Network | ipaddress.IPv6Network, index: int) -> str:
    return f"{network[index]}/{network.prefixlen}"


def _box_ip(uplink: Uplink, access: ipaddress.IPv4Network) -> str:
    """The box's address on an ISP's access network: the config's (what the controller
    tells the edge), or the network's second address when the config leaves it out."""
    if uplink.address is None:
        return _iface(access, 2)
    if uplink.address not in access or uplink.address == access[1]:
        raise ValueError(f"uplink {uplink.name}: address {uplink.address} is not a host of {access} "
                         f"other than the ISP's {access[1]}")
    return f"{uplink.address}/{access.prefixlen}"


def ip_part(interface: str) -> str:
    """The address part of "address/prefixlen"."""
    return interface.split("/")[0]


@dataclass(frozen=True)
class LanHost:
    """A host on the homenet LAN (addresses as "address/prefixlen")."""

    name: str
    intf: str
    box_port: str  # the MSPMB's port on this host's link
    ipv4: str
    ipv6: str | None


@dataclass(frozen=True)
class Isp:
    """An ISP router between the MSPMB and inet."""

    name: str  # the uplink's name in the config
    box_port: str  # the MSPMB's uplink veth
    customer_intf: str  # the ISP's interface towards the MSPMB
    inet_intf: str  # the ISP's interface towards inet
    inet_side_intf: str  # inet's interface towards the ISP
    access: ipaddress.IPv4Network  # the ISP-MSPMB subnet
    isp_ip: str  # ISP side of access (the MSPMB's gateway)
    box_ip: str  # the MSPMB's uplink address (on br-<isp>)
    isp_transit_ip: str
    inet_transit_ip: str


@dataclass(frozen=True)
class Server:
    name: str = SERVER
    intf: str = f"{SERVER}-eth0"
    inet_intf: str = f"{INET}-{SERVER}"
    ipv4: str = "203.0.113.10/24"
    ipv6: str = "2001:db8:200::10/64"
    inet_ipv4: str = "203.0.113.1/24"
    inet_ipv6: str = "2001:db8:200::1/64"


@dataclass(frozen=True)
class EdgeSite:
    """An MSP edge, its links to inet and its upstream BGP router up<n> (n: the edge's
    position in the config, from 1)."""

    edge: Edge
    router: str  # "up1"
    asn: int  # the upstream router's AS
    mgmt_ip: str | None  # the router's management address ("a.b.c.d/len"): its BGP session
    # to the controller; None when the edge has no bgp_neighbors (no session, no mgmt link)
    underlay_inet_intf: str  # inet's interface towards the edge's underlay port
    inet_underlay_ip: str  # on it: the edge's underlay gateway
    router_edge_intf: str  # the router's interface towards the edge's Internet port
    router_internet_ipv4: str  # on it: the edge's internet_gateway_ipv4
    router_internet_ipv6: str | None
    router_transit_intf: str  # router <-> inet
    inet_transit_intf: str
    router_transit_ipv4: str  # 198.18.20n.2/30
    inet_transit_ipv4: str  # 198.18.20n.1/30
    router_transit_ipv6: str  # 2001:db8:f20n::2/64
    inet_transit_ipv6: str  # 2001:db8:f20n::1/64

    @property
    def name(self) -> str:
        return self.edge.name


class Plan:
    """Names and addresses of the reference network, derived from an MspConfig.

    The reference network has one homenet (its MSPMB is the node "mspmb") and every edge
    of the config, each with its upstream router up<n>; ISP router names, port names and
    the edges' addresses come from the config.
    """

    def __init__(self, config: MspConfig) -> None:
        if len(config.homenets) != 1 or not config.edges:
            raise ValueError("the reference topology needs exactly one homenet and at least one edge "
                             f"(config has {len(config.homenets)} and {len(config.edges)})")
        self.config = config
        self.homenet = homenet = config.homenets[0]
        self.edge = config.edge(homenet.edge)  # the primary edge
        self.mspmb = MSPMB
        self.inet = INET
        self.inet_asn = INET_ASN
        self.boxes = (MSPMB, *(edge.name for edge in config.edges))

        # Management network: the controller's address on a root-namespace bridge.
        controller = ipaddress.ip_address(config.controller_address)
        if controller.version != 4:
            raise ValueError("the reference topology needs an IPv4 msp.controller_address")
        mgmt_net = ipaddress.ip_network(f"{controller}/24", strict=False)
        self.mgmt_bridge = MGMT_BRIDGE
        self.mgmt_network = mgmt_net
        self.mgmt_bridge_ip = f"{controller}/{mgmt_net.prefixlen}"

        # Edges and their upstream routers (their management addresses are the config's
        # BGP neighbor addresses, so they must lie in the management network).
        self.sites: dict[str, EdgeSite] = {}
        for n, edge in enumerate(config.edges, 1):
            neighbor = edge.bgp_neighbors[0] if edge.bgp_neighbors else None
            if neighbor is not None and (neighbor.address not in mgmt_net or neighbor.address == controller):
                raise ValueError(f"edge {edge.name}: BGP neighbor {neighbor.address} is not a free address "
                                 f"of the management network {mgmt_net} (the reference topology puts "
                                 "the upstream router there)")
            router = f"up{n}"
            underlay_net = edge.tunnel_addresses[0].network
            v4 = ipaddress.IPv4Network(f"198.18.{200 + n}.0/30")
            v6 = ipaddress.IPv6Network(f"2001:db8:f{200 + n}::/64")
            self.sites[edge.name] = EdgeSite(
                edge=edge, router=router,
                asn=neighbor.asn if neighbor else UPSTREAM_ASN_BASE + n,
                mgmt_ip=f"{neighbor.address}/{mgmt_net.prefixlen}" if neighbor else None,
                underlay_inet_intf=f"{INET}-{edge.name}up",
                inet_underlay_ip=f"{edge.underlay_gateway}/{underlay_net.prefixlen}",
                router_edge_intf=f"{router}-{edge.name}",
                router_internet_ipv4=f"{edge.internet_gateway_ipv4}/{edge.internet_ipv4.network.prefixlen}",
                router_internet_ipv6=(f"{edge.internet_gateway_ipv6}/{edge.internet_ipv6.network.prefixlen}"
                                      if edge.internet_ipv6 and edge.internet_gateway_ipv6 else None),
                router_transit_intf=f"{router}-{INET}", inet_transit_intf=f"{INET}-{router}",
                router_transit_ipv4=_iface(v4, 2), inet_transit_ipv4=_iface(v4, 1),
                router_transit_ipv6=_iface(v6, 2), inet_transit_ipv6=_iface(v6, 1))
        self.routers = tuple(site.router for site in self.sites.values())

        taken = {controller} | {ipaddress.ip_address(ip_part(s.mgmt_ip)) for s in self.sites.values() if s.mgmt_ip}
        free = (ip for ip in mgmt_net.hosts() if ip not in taken)
        self.mgmt_ips = {box: f"{next(free)}/{mgmt_net.prefixlen}" for box in self.boxes}
        self.mgmt_ips.update({s.router: s.mgmt_ip for s in self.sites.values() if s.mgmt_ip})
        self.mgmt_root_intfs = {node: f"m-{node}" for node in self.mgmt_ips}

        # LAN hosts: h<i> on the i-th LAN port.
        v6net = homenet.lan_ipv6.network if homenet.lan_ipv6 else None
        self.hosts = [LanHost(name=f"h{i}", intf=f"h{i}-eth0", box_port=port,
                              ipv4=_iface(homenet.lan_ipv4.network, 10 * i),
                              ipv6=_iface(v6net, 0x10 * i) if v6net else None)
                      for i, port in enumerate(homenet.lan_ports, 1)]

        # ISPs: ISP n (uplink slot n-1) gets 198.18.n.0/24 to the MSPMB, 198.18.10n.0/30 to inet.
        self.isps = []
        for uplink in homenet.uplinks:
            n = uplink.slot + 1
            access = ipaddress.IPv4Network(f"198.18.{n}.0/24")
            transit = ipaddress.IPv4Network(f"198.18.{100 + n}.0/30")
            self.isps.append(Isp(
                name=uplink.name, box_port=uplink.port, customer_intf=f"{uplink.name}-{MSPMB}",
                inet_intf=f"{uplink.name}-inet", inet_side_intf=f"{INET}-{uplink.name}",
                access=access, isp_ip=_iface(access, 1), box_ip=_box_ip(uplink, access),
                isp_transit_ip=_iface(transit, 2), inet_transit_ip=_iface(transit, 1)))
        self.uplink_addresses = {isp.name: isp.box_ip for isp in self.isps}
        self.uplink_gateways = {isp.name: ip_part(isp.isp_ip) for isp in self.isps}

        # The primary edge's links, under their old names.
        primary = self.sites[self.edge.name]
        self.edge_underlay_inet_intf = primary.underlay_inet_intf
        self.inet_underlay_ip = primary.inet_underlay_ip

        # The server, somewhere on the Internet.
        self.server = Server()

    def site(self, edge: str) -> EdgeSite:
        try:
            return self.sites[edge]
        except KeyError:
            raise KeyError(f"no edge {edge!r} in the reference network "
                           f"(edges: {', '.join(self.sites)})") from None

    @property
    def nodes(self) -> list[str]:
        return ([h.name for h in self.hosts] + [MSPMB] + [i.name for i in self.isps]
                + [INET, *self.sites, *self.routers, SERVER])

    @property
    def bird_routers(self) -> tuple[str, ...]:
        """The nodes that run BIRD."""
        return (*self.routers, INET)

    # -- BIRD

    def upstream_bird(self, edge: str, log: str | None = None) -> RouterConfig:
        """bird.conf of an edge's upstream router: learns the homenets' prefixes from the
        controller (passive, multihop, over IPv4; IPv6 prefixes over the same session),
        announces them to inet (an IPv4 and an IPv6 session on the transit link)."""
        site = self.site(edge)
        sessions = []
        config = self.config
        if site.mgmt_ip is not None and config.bgp is not None:
            v4 = [str(p) for h in config.homenets for p in h.prefixes_v4]
            v6 = [str(p) for h in config.homenets for p in h.prefixes_v6]
            sessions.append(BgpSession(
                name="msp", description="the MSP controller", local_as=site.asn, source=ip_part(site.mgmt_ip),
                neighbor=config.controller_address, neighbor_as=config.bgp.asn, multihop=True, passive=True,
                timers=CONTROLLER_SESSION_TIMERS,
                channels=(Channel("ipv4", import_filter=prefix_filter(v4, CUSTOMER_LOCAL_PREF)),
                          Channel("ipv6", import_filter=prefix_filter(v6, CUSTOMER_LOCAL_PREF)))))
        sessions += [
            BgpSession(name="inet4", description="inet (transit), IPv4", local_as=site.asn,
                       neighbor=ip_part(site.inet_transit_ipv4), neighbor_as=INET_ASN,
                       channels=(Channel("ipv4", export_filter="where source = RTS_BGP"),)),
            BgpSession(name="inet6", description="inet (transit), IPv6", local_as=site.asn,
                       neighbor=ip_part(site.inet_transit_ipv6), neighbor_as=INET_ASN,
                       channels=(Channel("ipv6", export_filter="where source = RTS_BGP"),)),
        ]
        router_id = ip_part(site.mgmt_ip) if site.mgmt_ip else ip_part(site.router_transit_ipv4)
        return RouterConfig(router_id=router_id, sessions=tuple(sessions), log=log,
                            comments=(f"{site.router}: upstream router of MSP edge {edge}, AS {site.asn}",
                                      "generated by topologies/plan.py (Plan.upstream_bird)"))

    def inet_bird(self, log: str | None = None) -> RouterConfig:
        """bird.conf of inet: eBGP with every upstream router, IPv4 and IPv6."""
        sessions = []
        for site in self.sites.values():
            sessions += [
                BgpSession(name=f"{site.router}_v4", description=f"{site.router} (edge {site.name}), IPv4",
                           local_as=INET_ASN, neighbor=ip_part(site.router_transit_ipv4), neighbor_as=site.asn,
                           channels=(Channel("ipv4", export_filter="where source = RTS_BGP"),)),
                BgpSession(name=f"{site.router}_v6", description=f"{site.router} (edge {site.name}), IPv6",
                           local_as=INET_ASN, neighbor=ip_part(site.router_transit_ipv6), neighbor_as=site.asn,
                           channels=(Channel("ipv6", export_filter="where source = RTS_BGP"),)),
            ]
        first = next(iter(self.sites.values()))
        return RouterConfig(router_id=ip_part(first.inet_transit_ipv4), sessions=tuple(sessions), log=log,
                            comments=(f"inet: the Internet's transit router, AS {INET_ASN}",
                                      "generated by topologies/plan.py (Plan.inet_bird)"))


def with_overrides(config: MspConfig, controller_port: int | str | None = None,
                   controller_address: str | None = None) -> MspConfig:
    """The config with msp.controller_port / msp.controller_address replaced (if given)."""
    changes: dict[str, Any] = {}
    if controller_port is not None:
        changes["controller_port"] = int(controller_port)
    if controller_address is not None:
        changes["controller_address"] = str(ipaddress.ip_address(controller_address))
    return dataclasses.replace(config, **changes) if changes else config
