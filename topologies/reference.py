r"""The MSP reference network, emulated with Mininet hosts (one namespace per node).

       h1 ---+                 +--- ispA ---+
             |--- mspmb ------ |            |--- inet --- server
       h2 ---+                 +--- ispB ---+    / | \
                                   edge1-up ----+  |  +---- edge2-up
                                      edge1        |           edge2
                                   edge1-inet      |        edge2-inet
                                       |           |            |
                                      up1 ------- inet -------- up2
       BGP (BIRD): up1 AS 64501, up2 AS 64502, inet AS 64496; the MSP (controller) AS 65000
       namespace msp-ctl: the Ryu controller (with its BGP speaker), reached over a management
       network (Linux bridge msp-mgmt, 198.19.0.1/24; veths m-<node> -> mgmt0 in the node);
       no default route, so nothing in it can reach beyond this machine (control_ns.py):
       mspmb .2, edge1 .3, edge2 .4 (their OpenFlow), up1 .11, up2 .12 (their BGP sessions)

Every node is a Mininet Host; there are no Mininet switches and no Mininet controller.
The boxes (mspmb, edge1, edge2) each run their own ovsdb-server + ovs-vswitchd
(userspace datapath) in their namespace (see topologies/ovsbox.py), provisioned from the
MSP config with msp_controller.provision; flows and groups are left to the controller.
The routers up1, up2 and inet run BIRD 2 (see topologies/bird.py; configs from
Plan.upstream_bird / Plan.inet_bird).

Addressing (derived from etc/reference.toml; ISP n is uplink slot n-1, edge n the n-th
[[edges]] entry, up<n> its upstream router):
  homenet PI      198.51.100.0/24, 2001:db8:100::/48; h1 .10/::10, h2 .20/::20 (MTU 1450),
                  gateway 198.51.100.1 / 2001:db8:100::1 (answered by the controller)
  mspmb <-> ispN  198.18.N.0/24: ISP .1, MSPMB .2 (on the MSPMB's bridge br-ispN);
                  the MSPMB routes each edge tunnel address (/32) via its ISP
  ispN <-> inet   198.18.10N.0/30: inet .1, ISP .2; ISPs default-route to inet and
                  never learn the PI prefix (only their default route leads to it)
  edgeN-up        the edge's underlay_gateway on inet (198.18.10.1/24, 198.18.11.1/24);
                  the edge's tunnel addresses (.11, .12) on its br-up
  edgeN-inet      <-> upN: upN has the edge's internet_gateway_ipv4/ipv6 (198.18.20.1/24
                  + 2001:db8:ff20::1/64 for edge1, 198.18.21.1 + 2001:db8:ff21::1 for edge2);
                  the edge's OpenFlow bridge answers as .2/::2 (no kernel address); MTU 1450
  upN <-> inet    198.18.20N.0/30 (inet .1, upN .2), 2001:db8:f20N::/64 (inet ::1, upN ::2);
                  upN default-routes to inet (both families)
  inet <-> server 203.0.113.0/24, 2001:db8:200::/64: inet .1/::1, server .10/::10
  inet            static routes to each ISP's access /24; the edges' underlay nets and the
                  server are connected; the PI prefixes only come from BGP (or, opt-in,
                  from static_pi_routes: inet -> up<primary> -> primary edge, metric 2000)
  management      msp-mgmt <msp.controller_address>/24 in the controller's namespace
                  msp-ctl; boxes take the first free addresses (.2, .3, .4), upN its edge's
                  bgp_neighbors address. The root namespace reaches the controller's REST
                  API over the operator link msp-op 198.19.255.1/30 <-> 198.19.255.2 only.
                  start() refuses an operator link that clashes with the root namespace's
                  own addresses or routes.

BGP (BIRD 2.0.12):
  upN   protocol bgp msp: local <mgmt address> as 6450N; neighbor <controller> as 65000;
        multihop; passive on (the controller connects); ipv4 + ipv6 channels on this IPv4
        session, importing only routes inside the config's homenet prefixes, with local
        preference 200 (customer routes beat the same prefix heard back through inet), the
        IPv6 next hop resolved recursively over the edge link; exporting nothing.
        protocol bgp inet4 / inet6: eBGP to inet over the transit link, one session per
        family, exporting what BGP learned.
  inet  protocol bgp up<n>_v4 / up<n>_v6: eBGP to every upN, exporting what BGP learned.
  all   protocol device, direct (connected routes), kernel_4/kernel_6 exporting BGP's best
        routes to the namespace's kernel table (metric 32), so forwarding follows BGP.
  Timers: hold 9 s, keepalive 3 s (30 s / 10 s on the session to the controller), error
  wait 1-5 s (a restarted controller is accepted again within seconds).
  By hand: birdc -s <run_dir>/<router>/bird.ctl show protocols [all msp]
           birdc -s <run_dir>/inet/bird.ctl show route for 198.51.100.10 all
  From Python: topologies.bird.bgp_states(ref["up1"]), best_route(ref["inet"], "198.51.100.0/24").

Failures (topologies/faults.py): isp_blackhole / isp_loss on an ISP; stop_edge /
start_edge (the edge's ovs-vswitchd dies / comes back), cut_edge_underlay (inet drops the
edge's underlay traffic).

Run it (as root, from the repository root):
  .venv/bin/python -m topologies.reference              start, then Mininet's CLI
  .venv/bin/python -m topologies.reference --no-cli     start, wait for Ctrl-C, stop
  .venv/bin/python -m topologies.reference --cleanup    remove what a crashed run left

From Python (tests, demo, benchmarks):
  with ReferenceNetwork("etc/reference.toml", run_dir="/run/msp") as ref:
      ref["h1"].cmd("ping -c1 203.0.113.10"); ref["mspmb"].vsctl("show")

Run directory (default /run/msp):
  <run_dir>/mspmb/, <run_dir>/edge1/, <run_dir>/edge2/
                                       each box's OVS db, sockets, pidfiles, logs
  <run_dir>/up1/, up2/, inet/          each router's bird.conf, bird.ctl, bird.pid, bird.log
  <run_dir>/nodes/<node>.pid           pid of each node's shell, to enter its namespace:
                                       nsenter -t $(cat /run/msp/nodes/ispA.pid) -n ip route
  By hand: OVS_RUNDIR=/run/msp/mspmb ovs-vsctl show (ovs-ofctl, ovs-appctl likewise).

`mn --custom topologies/reference.py --topo msp` also works (the boxes' config() hooks
start and provision OVS, their terminate() hooks stop it; in its CLI `mspmb ovs-vsctl
show` works), but `python -m topologies.reference` is the supported entry point. On any
exception or Ctrl-C outside its CLI `mn` runs its global cleanup (what `mn -c` does: kill
ping, mnexec, ryu-manager and all Mininet shells by name, delete every *-ethN link and the
system OVS's bridges); when mn loads this file, that cleanup is replaced by one that
removes only what this topology created (see _guard_mn). mn also copies every global of
this file into its own namespace, hence no global here may be named `cleanup`.
`mn --topo msp,config_path=...,run_dir=...,controller_address=...,static_pi_routes=1`
passes options to MspTopo.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import ipaddress
import json
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

# `mn --custom` execs this file without __file__; the code object still knows its file.
_THIS_FILE = os.path.abspath(
    globals().get("__file__") or inspect.currentframe().f_code.co_filename)  # type: ignore[union-attr]
REPO_ROOT = os.path.dirname(os.path.dirname(_THIS_FILE))
try:
    import msp_controller  # noqa: F401
    import topologies  # noqa: F401
except ImportError:  # `mn --custom` execs this file with only mn's own directory on sys.path
    sys.path.insert(0, REPO_ROOT)

from mininet.net import Mininet
from mininet.node import Host
from mininet.topo import Topo

from msp_controller.config import Edge, MspConfig, load_config
from msp_controller.provision import (
    edge_commands,
    edge_routes,
    mspmb_commands,
    mspmb_routes,
)
from topologies import control_ns
from topologies.bird import (
    DEFAULT_TIMERS,
    BgpSession,
    Channel,
    RouterConfig,
    bird_paths,
    bird_pid,
    prefix_filter,
    render_config,
    start_bird,
    stop_bird,
)
from topologies.faults import install_counters
from topologies.leak_guard import remove_stale_tables
from topologies.ovsbox import (
    DEFAULT_RUN_DIR,
    OVS_DAEMONS,
    OvsBox,
    add_mgmt_link,
    del_mgmt_link,
    kill_pid,
    prepare_ovs_ports,
    process_alive,
    read_pidfile,
    run,
)

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
STATIC_PI_ENV = "MSP_STATIC_PI_ROUTES"  # =1: ReferenceNetwork's static_pi_routes defaults to on


def resolve_config_path(path: str) -> str:
    """A relative path is tried from the current directory, then from the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else os.path.abspath(path)


def _iface(network: ipaddress.IPv4Network | ipaddress.IPv6Network, index: int) -> str:
    return f"{network[index]}/{network.prefixlen}"


def _ip(interface: str) -> str:
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

        taken = {controller} | {ipaddress.ip_address(_ip(s.mgmt_ip)) for s in self.sites.values() if s.mgmt_ip}
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
                access=access, isp_ip=_iface(access, 1), box_ip=_iface(access, 2),
                isp_transit_ip=_iface(transit, 2), inet_transit_ip=_iface(transit, 1)))
        self.uplink_addresses = {isp.name: isp.box_ip for isp in self.isps}
        self.uplink_gateways = {isp.name: _ip(isp.isp_ip) for isp in self.isps}

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
                name="msp", description="the MSP controller", local_as=site.asn, source=_ip(site.mgmt_ip),
                neighbor=config.controller_address, neighbor_as=config.bgp.asn, multihop=True, passive=True,
                timers=CONTROLLER_SESSION_TIMERS,
                channels=(Channel("ipv4", import_filter=prefix_filter(v4, CUSTOMER_LOCAL_PREF)),
                          Channel("ipv6", import_filter=prefix_filter(v6, CUSTOMER_LOCAL_PREF)))))
        sessions += [
            BgpSession(name="inet4", description="inet (transit), IPv4", local_as=site.asn,
                       neighbor=_ip(site.inet_transit_ipv4), neighbor_as=INET_ASN,
                       channels=(Channel("ipv4", export_filter="where source = RTS_BGP"),)),
            BgpSession(name="inet6", description="inet (transit), IPv6", local_as=site.asn,
                       neighbor=_ip(site.inet_transit_ipv6), neighbor_as=INET_ASN,
                       channels=(Channel("ipv6", export_filter="where source = RTS_BGP"),)),
        ]
        router_id = _ip(site.mgmt_ip) if site.mgmt_ip else _ip(site.router_transit_ipv4)
        return RouterConfig(router_id=router_id, sessions=tuple(sessions), log=log,
                            comments=(f"{site.router}: upstream router of MSP edge {edge}, AS {site.asn}",
                                      "generated by topologies/reference.py (Plan.upstream_bird)"))

    def inet_bird(self, log: str | None = None) -> RouterConfig:
        """bird.conf of inet: eBGP with every upstream router, IPv4 and IPv6."""
        sessions = []
        for site in self.sites.values():
            sessions += [
                BgpSession(name=f"{site.router}_v4", description=f"{site.router} (edge {site.name}), IPv4",
                           local_as=INET_ASN, neighbor=_ip(site.router_transit_ipv4), neighbor_as=site.asn,
                           channels=(Channel("ipv4", export_filter="where source = RTS_BGP"),)),
                BgpSession(name=f"{site.router}_v6", description=f"{site.router} (edge {site.name}), IPv6",
                           local_as=INET_ASN, neighbor=_ip(site.router_transit_ipv6), neighbor_as=site.asn,
                           channels=(Channel("ipv6", export_filter="where source = RTS_BGP"),)),
            ]
        first = next(iter(self.sites.values()))
        return RouterConfig(router_id=_ip(first.inet_transit_ipv4), sessions=tuple(sessions), log=log,
                            comments=(f"inet: the Internet's transit router, AS {INET_ASN}",
                                      "generated by topologies/reference.py (Plan.inet_bird)"))


def with_overrides(config: MspConfig, controller_port: int | str | None = None,
                   controller_address: str | None = None) -> MspConfig:
    """The config with msp.controller_port / msp.controller_address replaced (if given)."""
    changes: dict[str, Any] = {}
    if controller_port is not None:
        changes["controller_port"] = int(controller_port)
    if controller_address is not None:
        changes["controller_address"] = str(ipaddress.ip_address(controller_address))
    return dataclasses.replace(config, **changes) if changes else config


def operator_link_conflicts() -> list[str]:
    """Addresses and routes of the root namespace that the operator link (control_ns) would
    clash with. Default routes are ignored."""
    mine = control_ns.OPERATOR_NETWORK
    found = []
    for item in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        if item.get("ifname") == control_ns.OPERATOR_ROOT_INTF:
            continue
        for addr in item.get("addr_info", []):
            net = ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            if net.overlaps(mine):
                found.append(f"{addr['local']}/{addr['prefixlen']} on {item['ifname']}")
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "main"]) or "[]"):
        dst = route.get("dst", "default")
        if dst == "default" or route.get("dev") == control_ns.OPERATOR_ROOT_INTF:
            continue
        net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if net.overlaps(mine):
            via = f" via {route['gateway']}" if "gateway" in route else ""
            found.append(f"route {dst}{via} dev {route.get('dev')}")
    return found


class TopologyError(RuntimeError):
    """The reference network cannot start here (clashes, leftovers)."""


def preflight(plan: Plan, run_dir: str) -> None:
    """Refuse to start over leftovers or a management network that clashes with the host."""
    problems = []
    found = leftovers(plan, run_dir)
    if found:
        problems.append("an earlier run left " + ", ".join(found) + "; remove them with "
                        f"`python -m topologies.reference --cleanup --run-dir {run_dir}`")
    clashes = operator_link_conflicts()
    if clashes:
        problems.append(f"the operator link {control_ns.OPERATOR_NETWORK} clashes with the root "
                        "namespace: " + ", ".join(clashes))
    try:
        control_ns.check_addresses(plan.config.controller_address)
    except control_ns.NamespaceError as err:
        problems.append(str(err))
    if problems:
        raise TopologyError("; ".join(problems))


# --- node classes ------------------------------------------------------------------------


def _batch(node: Host, lines: Iterable[str]) -> None:
    lines = list(lines)
    if lines:
        run(["ip", "-batch", "-"], node, input="\n".join(lines) + "\n")


def _sysctl(node: Host, settings: Iterable[str]) -> None:
    settings = list(settings)
    if settings:
        run(["sysctl", "-qw", *settings], node)


def configure_ip(node: Host, addresses: Mapping[str, Sequence[str]], routes: Sequence[str] = (),
                 mtu: Mapping[str, int] | None = None, forwarding: bool = False) -> None:
    """Addresses (IPv6 without DAD), MTUs, routes (`ip -batch` lines), forwarding."""
    settings = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
    settings += [f"net.ipv6.conf.{intf}.accept_dad=0" for intf in addresses]
    if forwarding:
        settings += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
    _sysctl(node, settings)
    lines = []
    for intf, addrs in addresses.items():
        if mtu and intf in mtu:
            lines.append(f"link set {intf} mtu {mtu[intf]}")
        for addr in addrs:
            nodad = " nodad" if ":" in addr else ""
            lines.append(f"addr replace {addr} dev {intf}{nodad}")
        lines.append(f"link set {intf} up")
    _batch(node, lines)
    _batch(node, routes)


class RoutedHost(Host):
    """A host or router configured from params: addresses, routes, mtu, forwarding."""

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        # Before Mininet creates the links: no DAD, so even link-local addresses are
        # usable the moment an interface comes up.
        _sysctl(self, ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])

    def config(self, addresses: Mapping[str, Sequence[str]] | None = None,
               routes: Sequence[str] = (), mtu: Mapping[str, int] | None = None,
               forwarding: bool = False, **params: Any) -> dict:
        result = super().config(**params)
        configure_ip(self, addresses or {}, routes, mtu, forwarding)
        for intf in addresses or {}:
            # OVS 3.1's userspace datapath cannot put a packet whose checksum the kernel left
            # for offload into a VXLAN tunnel (it drops it): every sender computes its own.
            run(["ethtool", "-K", intf, "tx", "off"], self)
        return result


class IspRouter(RoutedHost):
    """An ISP router: forwards, counts what it forwards per direction (topologies.faults),
    and, like a real access network, carries rate_mbit at most each way."""

    def config(self, customer_intf: str | None = None, rate_mbit: int | str = 0,  # type: ignore[override]
               **params: Any) -> dict:
        result = super().config(**params)
        self.customer_intf = customer_intf
        if customer_intf:
            install_counters(self, customer_intf)
        if int(rate_mbit) > 0:
            for intf in params.get("addresses", {}):
                shape(self, intf, int(rate_mbit))
        return result


ISP_QUEUE_PACKETS = 100  # 12 ms at 100 Mbit/s: a modern access link, not a bloated one


def shape(node: Host, intf: str, rate_mbit: int) -> None:
    """An HTB rate limit with a short FIFO on the egress of one interface (netem and fq_codel
    are missing from this kernel; HTB works)."""
    run(["tc", "qdisc", "replace", "dev", intf, "root", "handle", "1:", "htb", "default", "10"], node)
    run(["tc", "class", "replace", "dev", intf, "parent", "1:", "classid", "1:10", "htb",
         "rate", f"{rate_mbit}mbit", "ceil", f"{rate_mbit}mbit"], node)
    run(["tc", "qdisc", "replace", "dev", intf, "parent", "1:10", "handle", "10:", "pfifo",
         "limit", str(ISP_QUEUE_PACKETS)], node)


class MspmbBox(OvsBox):
    """The homenet's MSPMB: br-home (LAN ports, tunnels) and one underlay bridge per ISP."""

    def config(self, msp_config: MspConfig | None = None, homenet: str | None = None,  # type: ignore[override]
               uplink_addresses: Mapping[str, str] | None = None,
               uplink_gateways: Mapping[str, str] | None = None, **params: Any) -> dict:
        self.msp_config = msp_config
        self.homenet = msp_config.homenet(homenet) if msp_config and homenet else None
        self.uplink_addresses = dict(uplink_addresses or {})
        self.uplink_gateways = dict(uplink_gateways or {})
        return super().config(**params)

    def provision(self) -> None:
        config, homenet = self.msp_config, self.homenet
        if config is None or homenet is None:
            return
        mtu = {port: OVERLAY_MTU for port in homenet.lan_ports}
        mtu.update({uplink.port: UNDERLAY_MTU for uplink in homenet.uplinks})
        prepare_ovs_ports(self, mtu, mtu)
        for command in mspmb_commands(config, homenet):
            self.vsctl(*command)
        self.configure_underlay()

    def configure_underlay(self) -> None:
        """Kernel side of the uplink bridges' internal ports: addresses, MTU, routes to the
        edges' tunnel addresses (ovs-vswitchd recreates those ports when it restarts)."""
        config, homenet = self.msp_config, self.homenet
        if config is None or homenet is None:
            return
        bridges = [uplink.bridge for uplink in homenet.uplinks]
        _sysctl(self, [f"net.ipv6.conf.{b}.disable_ipv6=1" for b in bridges])
        lines = []
        for uplink in homenet.uplinks:
            lines += [f"link set {uplink.bridge} mtu {UNDERLAY_MTU}", f"link set {uplink.bridge} up",
                      f"addr replace {self.uplink_addresses[uplink.name]} dev {uplink.bridge}"]
        _batch(self, lines)
        _batch(self, [shlex.join(c) for c in mspmb_routes(config, homenet, self.uplink_gateways)])

    def restore_after_vswitchd(self) -> None:
        self.configure_underlay()
        super().restore_after_vswitchd()


class EdgeBox(OvsBox):
    """An MSP edge: br-msp (Internet port, tunnels to homenets) and br-up (underlay)."""

    def config(self, msp_config: MspConfig | None = None, edge: str | None = None,  # type: ignore[override]
               uplink_addresses: Mapping[tuple[str, str], str] | None = None,
               **params: Any) -> dict:
        self.msp_config = msp_config
        self.edge = msp_config.edge(edge) if msp_config and edge else None
        self.uplink_addresses = dict(uplink_addresses or {})
        return super().config(**params)

    def provision(self) -> None:
        config, edge = self.msp_config, self.edge
        if config is None or edge is None:
            return
        mtu = {edge.underlay_port: UNDERLAY_MTU, edge.internet_port: OVERLAY_MTU}
        prepare_ovs_ports(self, mtu, mtu)
        for command in edge_commands(config, edge, self.uplink_addresses):
            self.vsctl(*command)
        self.configure_underlay()

    def configure_underlay(self) -> None:
        """Kernel side of br-up: tunnel addresses, MTU, default route (ovs-vswitchd
        recreates br-up's internal port when it restarts)."""
        edge = self.edge
        if edge is None:
            return
        _sysctl(self, [f"net.ipv6.conf.{edge.underlay_bridge}.disable_ipv6=1"])
        _batch(self, [f"link set {edge.underlay_bridge} mtu {UNDERLAY_MTU}"])
        _batch(self, [shlex.join(c) for c in edge_routes(edge)])

    def restore_after_vswitchd(self) -> None:
        self.configure_underlay()
        super().restore_after_vswitchd()


class BgpRouter(RoutedHost):
    """A router running BIRD in its namespace (topologies/bird.py), files in <run_dir>/<name>/.

    Parameters (besides RoutedHost's): run_dir; bird: its RouterConfig (log path filled
    in here); mgmt: optional dict(bridge=, bridge_ip=, ip=, root_intf=) for a management
    veth like the boxes' (the BGP session to the controller runs over it).
    """

    def __init__(self, name: str, run_dir: str = DEFAULT_RUN_DIR, **params: Any) -> None:
        self.bird_dir = os.path.join(os.path.abspath(run_dir), name)
        self.bird_socket = bird_paths(self.bird_dir)["socket"]
        self.bird_config: RouterConfig | None = None
        self.mgmt: dict[str, str] | None = None
        super().__init__(name, **params)

    def config(self, bird: RouterConfig | None = None, mgmt: Mapping[str, str] | None = None,  # type: ignore[override]
               **params: Any) -> dict:
        result = super().config(**params)
        if mgmt:
            self.mgmt = add_mgmt_link(self, mgmt["bridge"], mgmt["ip"], mgmt.get("bridge_ip"),
                                      mgmt.get("root_intf"), mgmt.get("box_intf", "mgmt0"))
        if bird is not None:
            self.start_bird(bird)
        return result

    def start_bird(self, config: RouterConfig) -> int:
        """(Re)write bird.conf and start BIRD; returns its pid."""
        self.stop_bird()
        shutil.rmtree(self.bird_dir, ignore_errors=True)
        self.bird_config = dataclasses.replace(config, log=bird_paths(self.bird_dir)["log"])
        return start_bird(self, self.bird_dir, render_config(self.bird_config))

    def stop_bird(self) -> None:
        stop_bird(self.bird_dir)

    def bird_pid(self) -> int | None:
        return bird_pid(self.bird_dir)

    def terminate(self) -> None:
        try:
            self.stop_bird()
            shutil.rmtree(self.bird_dir, ignore_errors=True)
        finally:
            try:
                del_mgmt_link(self.mgmt)
                self.mgmt = None
            finally:
                super().terminate()


# --- topology ------------------------------------------------------------------------------


DEFAULT_ISP_RATE_MBIT = 100  # each emulated ISP's access rate, each way


class MspTopo(Topo):
    """The reference network as a Mininet Topo (see the module docstring).

    MspTopo(config_path="etc/reference.toml", run_dir="/run/msp", controller_port=None)
    or MspTopo(config=<MspConfig>, run_dir=...). Build it with
    Mininet(topo, controller=None): the boxes start and provision their own OVS, the
    routers their BIRD. static_pi_routes=True adds static routes to the PI prefixes
    (inet -> primary edge's router -> primary edge) under whatever BGP learns.
    """

    def build(self, config_path: str = DEFAULT_CONFIG, run_dir: str = DEFAULT_RUN_DIR,
              controller_port: int | str | None = None, controller_address: str | None = None,
              config: MspConfig | None = None, check: bool = True,
              static_pi_routes: bool | str = False, isp_rate_mbit: int | str = DEFAULT_ISP_RATE_MBIT) -> None:
        if config is None:
            config = load_config(resolve_config_path(config_path))
        config = with_overrides(config, controller_port, controller_address)
        if isinstance(static_pi_routes, str):  # from `mn --topo msp,static_pi_routes=1`
            static_pi_routes = static_pi_routes.lower() in ("1", "true", "yes", "on")
        self.msp_config = config
        self.plan = plan = Plan(config)
        homenet = plan.homenet
        run_dir = os.path.abspath(run_dir)
        if _under_mn():
            _MN_STATE.update(plan=plan, run_dir=run_dir)
        if check:
            try:
                preflight(plan, run_dir)
            except TopologyError as err:
                if _under_mn():
                    # Nothing was created yet: exit with the message alone, no traceback.
                    sys.stderr.write(f"*** {err}\n")
                    raise SystemExit(1) from None
                raise

        def mgmt(node: str) -> dict[str, str]:
            return {"bridge": plan.mgmt_bridge, "bridge_ip": plan.mgmt_bridge_ip,
                    "ip": plan.mgmt_ips[node], "root_intf": plan.mgmt_root_intfs[node],
                    "box_intf": "mgmt0"}

        # ip=None everywhere: no Mininet default (10.0.0.x) addresses.
        for host in plan.hosts:
            addrs = [host.ipv4] + ([host.ipv6] if host.ipv6 else [])
            routes = [f"route replace default via {homenet.lan_ipv4.ip} dev {host.intf}"]
            if homenet.lan_ipv6 and host.ipv6:
                routes.append(f"route replace default via {homenet.lan_ipv6.ip} dev {host.intf}")
            self.addHost(host.name, cls=RoutedHost, ip=None, addresses={host.intf: addrs},
                         routes=routes, mtu={host.intf: OVERLAY_MTU})

        self.addHost(MSPMB, cls=MspmbBox, ip=None, run_dir=run_dir, mgmt=mgmt(MSPMB),
                     msp_config=config, homenet=homenet.name,
                     uplink_addresses=plan.uplink_addresses, uplink_gateways=plan.uplink_gateways)

        for isp in plan.isps:
            self.addHost(isp.name, cls=IspRouter, ip=None, forwarding=True,
                         customer_intf=isp.customer_intf, rate_mbit=isp_rate_mbit,
                         addresses={isp.customer_intf: [isp.isp_ip], isp.inet_intf: [isp.isp_transit_ip]},
                         routes=[f"route replace default via {_ip(isp.inet_transit_ip)} dev {isp.inet_intf}"])

        # inet: static routes to the ISPs' access networks; the edges' underlay networks
        # and the server are connected; the PI prefixes come from BGP.
        server = plan.server
        primary = plan.site(plan.edge.name)
        inet_addrs: dict[str, list[str]] = {}
        inet_routes = []
        for isp in plan.isps:
            inet_addrs[isp.inet_side_intf] = [isp.inet_transit_ip]
            inet_routes.append(f"route replace {isp.access} via {_ip(isp.isp_transit_ip)} "
                               f"dev {isp.inet_side_intf}")
        for site in plan.sites.values():
            inet_addrs[site.underlay_inet_intf] = [site.inet_underlay_ip]
            inet_addrs[site.inet_transit_intf] = [site.inet_transit_ipv4, site.inet_transit_ipv6]
        inet_addrs[server.inet_intf] = [server.inet_ipv4, server.inet_ipv6]
        if static_pi_routes:
            for prefix in homenet.prefixes_v4:
                inet_routes.append(f"route replace {prefix} via {_ip(primary.router_transit_ipv4)} "
                                   f"dev {primary.inet_transit_intf} metric {STATIC_PI_METRIC}")
            for prefix6 in homenet.prefixes_v6:
                inet_routes.append(f"route replace {prefix6} via {_ip(primary.router_transit_ipv6)} "
                                   f"dev {primary.inet_transit_intf} metric {STATIC_PI_METRIC}")
        self.addHost(INET, cls=BgpRouter, ip=None, forwarding=True, run_dir=run_dir,
                     addresses=inet_addrs, routes=inet_routes, bird=plan.inet_bird())

        uplink_addresses = {(homenet.name, name): _ip(address)
                            for name, address in plan.uplink_addresses.items()}
        for site in plan.sites.values():
            edge = site.edge
            self.addHost(edge.name, cls=EdgeBox, ip=None, run_dir=run_dir, mgmt=mgmt(edge.name),
                         msp_config=config, edge=edge.name, uplink_addresses=uplink_addresses)
            router_addrs = {site.router_edge_intf: [site.router_internet_ipv4] + (
                                [site.router_internet_ipv6] if site.router_internet_ipv6 else []),
                            site.router_transit_intf: [site.router_transit_ipv4, site.router_transit_ipv6]}
            router_routes = [f"route replace default via {_ip(site.inet_transit_ipv4)} dev {site.router_transit_intf}",
                             f"route replace default via {_ip(site.inet_transit_ipv6)} dev {site.router_transit_intf}"]
            if static_pi_routes and site is primary:
                router_routes += [f"route replace {prefix} via {edge.internet_ipv4.ip} "
                                  f"dev {site.router_edge_intf} metric {STATIC_PI_METRIC}"
                                  for prefix in homenet.prefixes_v4]
                if edge.internet_ipv6:
                    router_routes += [f"route replace {prefix} via {edge.internet_ipv6.ip} "
                                      f"dev {site.router_edge_intf} metric {STATIC_PI_METRIC}"
                                      for prefix in homenet.prefixes_v6]
            self.addHost(site.router, cls=BgpRouter, ip=None, forwarding=True, run_dir=run_dir,
                         mgmt=mgmt(site.router) if site.mgmt_ip else None,
                         addresses=router_addrs, routes=router_routes,
                         mtu={site.router_edge_intf: OVERLAY_MTU}, bird=plan.upstream_bird(edge.name))

        self.addHost(SERVER, cls=RoutedHost, ip=None,
                     addresses={server.intf: [server.ipv4, server.ipv6]},
                     routes=[f"route replace default via {_ip(server.inet_ipv4)} dev {server.intf}",
                             f"route replace default via {_ip(server.inet_ipv6)} dev {server.intf}"])

        for host in plan.hosts:
            self.addLink(host.name, MSPMB, intfName1=host.intf, intfName2=host.box_port)
        for isp in plan.isps:
            self.addLink(MSPMB, isp.name, intfName1=isp.box_port, intfName2=isp.customer_intf)
            self.addLink(isp.name, INET, intfName1=isp.inet_intf, intfName2=isp.inet_side_intf)
        for site in plan.sites.values():
            edge = site.edge
            self.addLink(edge.name, INET, intfName1=edge.underlay_port, intfName2=site.underlay_inet_intf)
            self.addLink(edge.name, site.router, intfName1=edge.internet_port, intfName2=site.router_edge_intf)
            self.addLink(site.router, INET, intfName1=site.router_transit_intf, intfName2=site.inet_transit_intf)
        self.addLink(INET, SERVER, intfName1=server.inet_intf, intfName2=server.intf)


topos = {"msp": MspTopo}


def _under_mn() -> bool:
    return os.path.basename(sys.argv[0] if sys.argv else "") == "mn"


_MN_STATE: dict[str, Any] = {}  # the topology mn built, for _mn_safe_cleanup


def _mn_safe_cleanup() -> None:
    """Stands in for mn's global cleanup when mn loads this file (see _guard_mn)."""
    plan, run_dir = _MN_STATE.get("plan"), _MN_STATE.get("run_dir", DEFAULT_RUN_DIR)
    if plan is None:
        plan = Plan(load_config(resolve_config_path(DEFAULT_CONFIG)))
    sys.stderr.write("*** msp: removing only what the MSP reference topology created "
                     "(not running mn's global cleanup)\n")
    remove_leftovers(plan, run_dir)


def _guard_mn() -> None:
    """`mn` calls its global cleanup (the same as `mn -c`: kills ping, mnexec, ryu-manager
    and every Mininet shell by name, deletes all *-ethN links and the system OVS's bridges)
    on any exception or Ctrl-C. When mn loads this file, make that cleanup remove only what
    this topology created, by pidfile and by name."""
    main = sys.modules.get("__main__")
    if _under_mn() and main is not None and callable(getattr(main, "cleanup", None)):
        main.cleanup = _mn_safe_cleanup  # type: ignore[attr-defined]


_guard_mn()


# --- the network as a whole ---------------------------------------------------------------


def _node_shell_alive(pid: int, name: str) -> bool:
    """Is pid still the Mininet shell of node `name` (bash ... mininet:<name>)?"""
    if not process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return False
    return f"mininet:{name}".encode() in args


def leftovers(plan: Plan, run_dir: str) -> list[str]:
    """What an earlier run of this topology left behind (processes, links, directories)."""
    found = []
    for box in plan.boxes:
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(os.path.join(run_dir, box, f"{daemon}.pid"))
            if pid is not None and process_alive(pid, daemon):
                found.append(f"{box}'s {daemon} (pid {pid})")
    for router in plan.bird_routers:
        pid = bird_pid(os.path.join(run_dir, router))
        if pid is not None:
            found.append(f"{router}'s bird (pid {pid})")
    nodes_dir = os.path.join(run_dir, "nodes")
    for name in plan.nodes:
        pid = read_pidfile(os.path.join(nodes_dir, f"{name}.pid"))
        if pid is not None and _node_shell_alive(pid, name):
            found.append(f"node {name}'s shell (pid {pid})")
    if control_ns.exists():
        for link in plan.mgmt_root_intfs.values():
            if control_ns.link_exists(link, control_ns.NAMESPACE):
                found.append(f"link {link} in namespace {control_ns.NAMESPACE}")
    return found


def remove_leftovers(plan: Plan, run_dir: str, remove_run_dir: bool = False) -> None:
    """Remove what this topology may have left: by pidfile and by name, nothing else."""
    errors: list[BaseException] = []

    def attempt(action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as err:
            errors.append(err)

    for box in plan.boxes:
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(os.path.join(run_dir, box, f"{daemon}.pid"))
            if pid is not None:
                attempt(kill_pid, pid, daemon)
        shutil.rmtree(os.path.join(run_dir, box), ignore_errors=True)
    for router in plan.bird_routers:
        attempt(stop_bird, os.path.join(run_dir, router))
        shutil.rmtree(os.path.join(run_dir, router), ignore_errors=True)
    nodes_dir = os.path.join(run_dir, "nodes")
    for name in plan.nodes:
        pid = read_pidfile(os.path.join(nodes_dir, f"{name}.pid"))
        if pid is not None and _node_shell_alive(pid, name):
            attempt(os.kill, pid, signal.SIGKILL)
    shutil.rmtree(nodes_dir, ignore_errors=True)
    for link in plan.mgmt_root_intfs.values():
        attempt(control_ns.delete_link, link)
    if remove_run_dir:
        try:
            os.rmdir(run_dir)
        except OSError:
            pass
    if errors:
        raise errors[0]


class ReferenceNetwork:
    """Start and stop the reference network; a context manager.

        with ReferenceNetwork() as ref:
            ref["h1"], ref["mspmb"].vsctl("show"), ref.net (the Mininet object)
    """

    def __init__(self, config_path: str = DEFAULT_CONFIG, run_dir: str = DEFAULT_RUN_DIR,
                 controller_port: int | None = None, controller_address: str | None = None,
                 static_pi_routes: bool | None = None,
                 isp_rate_mbit: int = DEFAULT_ISP_RATE_MBIT) -> None:
        """isp_rate_mbit: each ISP's access rate each way (0: unlimited, then the boxes' CPUs
        are the bottleneck and BFD at 30 ms flaps under a saturating transfer on 2 cores).
        static_pi_routes: also route the PI prefixes statically, inet -> up router of the
        primary edge -> primary edge (metric STATIC_PI_METRIC, under BGP's routes): the
        data plane works inbound without the controller's BGP. None (default): off unless
        the environment sets MSP_STATIC_PI_ROUTES=1 (for running the suites that way)."""
        if static_pi_routes is None:
            static_pi_routes = os.environ.get(STATIC_PI_ENV, "").lower() in ("1", "true", "yes", "on")
        self.static_pi_routes = static_pi_routes
        self.isp_rate_mbit = isp_rate_mbit
        self.config_path = resolve_config_path(config_path)
        self.config = with_overrides(load_config(self.config_path), controller_port, controller_address)
        self.plan = Plan(self.config)
        self.run_dir = os.path.abspath(run_dir)
        self.net: Mininet | None = None
        self._created_run_dir = False
        self._created_namespace = False

    # -- access

    def __getitem__(self, name: str) -> Host:
        if self.net is None:
            raise RuntimeError("the reference network is not running")
        return self.net[name]

    @property
    def boxes(self) -> dict[str, OvsBox]:
        return {name: self[name] for name in self.plan.boxes}

    @property
    def isps(self) -> dict[str, IspRouter]:
        return {isp.name: self[isp.name] for isp in self.plan.isps}

    @property
    def edges(self) -> dict[str, EdgeBox]:
        """The edges' boxes, in the config's order."""
        return {name: self[name] for name in self.plan.sites}

    @property
    def routers(self) -> dict[str, BgpRouter]:
        """Every node running BIRD: the edges' upstream routers, then inet."""
        return {name: self[name] for name in self.plan.bird_routers}

    def upstream(self, edge: str) -> BgpRouter:
        """The upstream router (up<n>) of an edge."""
        return self[self.plan.site(edge).router]

    def box_dir(self, box: str) -> str:
        return os.path.join(self.run_dir, box)

    # -- life cycle

    def start(self) -> None:
        """Create the nodes and links, address them, start and provision the boxes' OVS."""
        if self.net is not None:
            raise RuntimeError("the reference network is already running")
        preflight(self.plan, self.run_dir)
        self._created_namespace = control_ns.ensure(self.config.controller_address)
        if not os.path.isdir(self.run_dir):
            os.makedirs(self.run_dir, mode=0o755)
            self._created_run_dir = True
        topo = MspTopo(config=self.config, run_dir=self.run_dir, check=False,
                       static_pi_routes=self.static_pi_routes, isp_rate_mbit=self.isp_rate_mbit)
        self.net = Mininet(topo=topo, controller=None, build=False)
        try:
            self.net.build()  # nodes, links, then each node's config(): addresses, OVS, provisioning
            self.net.start()
            os.makedirs(os.path.join(self.run_dir, "nodes"), exist_ok=True)
            for node in self.net.hosts:
                with open(os.path.join(self.run_dir, "nodes", f"{node.name}.pid"), "w") as handle:
                    handle.write(f"{node.pid}\n")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this network started; safe to call twice or after a failed start."""
        net, self.net = self.net, None
        errors: list[BaseException] = []
        if net is not None:
            # OVS and BIRD first, while their ports still exist; then Mininet's links and shells.
            for node in net.hosts:
                try:
                    if isinstance(node, OvsBox):
                        node.stop_ovs()
                    elif isinstance(node, BgpRouter):
                        node.stop_bird()
                except Exception as err:
                    errors.append(err)
            try:
                net.stop()
            except Exception as err:
                errors.append(err)
        try:
            remove_leftovers(self.plan, self.run_dir, remove_run_dir=self._created_run_dir)
        except Exception as err:
            errors.append(err)
        if self._created_namespace:  # else it belongs to whoever made it (scenario, controller)
            self._created_namespace = False
            try:
                control_ns.remove()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- command line -----------------------------------------------------------------------


def _summary(ref: ReferenceNetwork) -> str:
    lines = ["", "*** MSP reference network is up. Boxes' Open vSwitch, by hand:"]
    for box in ref.plan.boxes:
        d = ref.box_dir(box)
        lines.append(f"    OVS_RUNDIR={d} ovs-vsctl show     "
                     f"(ovs-ofctl -O OpenFlow13 dump-flows unix:{d}/<bridge>.mgmt)")
    lines.append("*** BGP (BIRD), by hand:")
    for router in ref.plan.bird_routers:
        lines.append(f"    birdc -s {ref.run_dir}/{router}/bird.ctl show protocols")
    primary = ref.plan.homenet.prefixes_v4[0] if ref.plan.homenet.prefixes_v4 else None
    if primary is not None:
        lines.append(f"    birdc -s {ref.run_dir}/{INET}/bird.ctl show route for {primary} all")
    lines.append(f"    nsenter -t $(cat {ref.run_dir}/nodes/<node>.pid) -n <command>")
    lines.append(f"*** Controller expected at tcp:{ref.config.controller_address}:"
                 f"{ref.config.controller_port}, in namespace {control_ns.NAMESPACE}:")
    lines.append(f"    ip netns exec {control_ns.NAMESPACE} ryu-manager --ofp-listen-host "
                 f"{ref.config.controller_address} --wsapi-host {control_ns.OPERATOR_NS_IP} msp_controller.app")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topologies.reference",
                                     description="Run the MSP reference network (as root).")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="MSP config (TOML)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="base directory for the boxes' OVS")
    parser.add_argument("--controller-port", type=int, help="override msp.controller_port")
    parser.add_argument("--controller-address", help="override msp.controller_address "
                        "(the management bridge's address)")
    parser.add_argument("--static-pi-routes", action="store_true", default=None,
                        help="also route the PI prefixes statically to the primary edge (under BGP)")
    parser.add_argument("--no-cli", action="store_true", help="no Mininet CLI: run until Ctrl-C or SIGTERM")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove what an earlier run left (by pidfile and name) and exit")
    parser.add_argument("--quiet", action="store_true", help="less Mininet output")
    args = parser.parse_args(argv)

    from mininet.log import setLogLevel
    setLogLevel("warning" if args.quiet else "info")
    ref = ReferenceNetwork(args.config, args.run_dir, args.controller_port, args.controller_address,
                           static_pi_routes=args.static_pi_routes)
    if args.cleanup:
        found = leftovers(ref.plan, ref.run_dir)
        remove_leftovers(ref.plan, ref.run_dir, remove_run_dir=True)
        if control_ns.exists():
            found += [f"namespace {control_ns.NAMESPACE}"] + [f"pid {pid} in it" for pid in control_ns.pids()]
            control_ns.remove(kill=True)
        found += [f"nftables table {name}" for name in remove_stale_tables()]
        print("removed: " + (", ".join(found) if found else "nothing was left"))
        return 0

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if args.no_cli:
            stop.set()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        ref.start()
    except TopologyError as err:
        print(f"*** cannot start: {err}", file=sys.stderr)
        return 2
    try:
        print(_summary(ref), flush=True)
        if args.no_cli:
            signal.signal(signal.SIGINT, on_signal)
            print("*** Running; Ctrl-C or SIGTERM stops it", flush=True)
            while not stop.wait(1.0):
                pass
        else:
            from mininet.cli import CLI
            CLI(ref.net)
    finally:
        ref.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
