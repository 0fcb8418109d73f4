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
MSP config with msp_controller.dataplane.provision; flows and groups are left to the controller.
The routers up1, up2 and inet run BIRD 2 (see topologies/bird.py; configs from
Plan.upstream_bird / Plan.inet_bird).

This file holds the Mininet topology, MspTopo (and its `mn --custom` hooks). The addressing
below is computed in topologies/plan.py (Plan), the node classes are in topologies/nodes.py,
starting and stopping (ReferenceNetwork) and the command line in topologies/network.py, the
checks before a start and the removal of leftovers in topologies/preflight.py.

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
                  ReferenceNetwork.start() refuses an operator link that clashes with the
                  root namespace's own addresses or routes.

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

From Python (tests, demo, benchmarks), with topologies.network.ReferenceNetwork:
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

import inspect
import os
import sys
from typing import Any

# `mn --custom` execs this file without __file__; the code object still knows its file.
_THIS_FILE = os.path.abspath(
    globals().get("__file__") or inspect.currentframe().f_code.co_filename)  # type: ignore[union-attr]
REPO_ROOT = os.path.dirname(os.path.dirname(_THIS_FILE))
try:
    import msp_controller  # noqa: F401
    import topologies  # noqa: F401
except ImportError:  # `mn --custom` execs this file with only mn's own directory on sys.path
    sys.path.insert(0, REPO_ROOT)

from mininet.topo import Topo

from msp_controller.model.config import MspConfig, load_config
from topologies.nodes import BgpRouter, EdgeBox, IspRouter, MspmbBox, RoutedHost
from topologies.ovsbox import DEFAULT_RUN_DIR
from topologies.plan import (
    DEFAULT_CONFIG,
    INET,
    MSPMB,
    OVERLAY_MTU,
    SERVER,
    STATIC_PI_METRIC,
    Plan,
    ip_part,
    resolve_config_path,
    with_overrides,
)
from topologies.preflight import TopologyError, preflight, remove_leftovers

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
                         routes=[f"route replace default via {ip_part(isp.inet_transit_ip)} dev {isp.inet_intf}"])

        # inet: static routes to the ISPs' access networks; the edges' underlay networks
        # and the server are connected; the PI prefixes come from BGP.
        server = plan.server
        primary = plan.site(plan.edge.name)
        inet_addrs: dict[str, list[str]] = {}
        inet_routes = []
        for isp in plan.isps:
            inet_addrs[isp.inet_side_intf] = [isp.inet_transit_ip]
            inet_routes.append(f"route replace {isp.access} via {ip_part(isp.isp_transit_ip)} "
                               f"dev {isp.inet_side_intf}")
        for site in plan.sites.values():
            inet_addrs[site.underlay_inet_intf] = [site.inet_underlay_ip]
            inet_addrs[site.inet_transit_intf] = [site.inet_transit_ipv4, site.inet_transit_ipv6]
        inet_addrs[server.inet_intf] = [server.inet_ipv4, server.inet_ipv6]
        if static_pi_routes:
            for prefix in homenet.prefixes_v4:
                inet_routes.append(f"route replace {prefix} via {ip_part(primary.router_transit_ipv4)} "
                                   f"dev {primary.inet_transit_intf} metric {STATIC_PI_METRIC}")
            for prefix6 in homenet.prefixes_v6:
                inet_routes.append(f"route replace {prefix6} via {ip_part(primary.router_transit_ipv6)} "
                                   f"dev {primary.inet_transit_intf} metric {STATIC_PI_METRIC}")
        self.addHost(INET, cls=BgpRouter, ip=None, forwarding=True, run_dir=run_dir,
                     addresses=inet_addrs, routes=inet_routes, bird=plan.inet_bird())

        for site in plan.sites.values():
            edge = site.edge
            self.addHost(edge.name, cls=EdgeBox, ip=None, run_dir=run_dir, mgmt=mgmt(edge.name),
                         msp_config=config, edge=edge.name)
            router_addrs = {site.router_edge_intf: [site.router_internet_ipv4] + (
                                [site.router_internet_ipv6] if site.router_internet_ipv6 else []),
                            site.router_transit_intf: [site.router_transit_ipv4, site.router_transit_ipv6]}
            router_routes = [f"route replace default via {ip_part(gateway)} dev {site.router_transit_intf}"
                             for gateway in (site.inet_transit_ipv4, site.inet_transit_ipv6)]
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
                     routes=[f"route replace default via {ip_part(server.inet_ipv4)} dev {server.intf}",
                             f"route replace default via {ip_part(server.inet_ipv6)} dev {server.intf}"])

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


if __name__ == "__main__":
    from topologies.network import main  # it imports this module: only here, not at the top

    sys.exit(main())
