r"""The two comparison paths of the throughput benchmark, built beside the running reference
network between h1 and the server, and removed by name.

  plain VXLAN (VxlanPath): the same boxes' ovs-vswitchd, one flow per direction, then the
  same Internet side as the MSP path (the edge's upstream router, inet, the server):

    h1 msp-tpv-h1 ==veth== msp-tpv-mb [bridge msp-tpv in the MSPMB's OVS] msp-tpv-vx (VXLAN, VNI 4242)
       198.18.250.10/24                     in_port -> out, nothing else
         ... the MSPMB's own underlay (br-<isp>) -> the ISP -> inet -> the edge's br-up ...
    up1 msp-tpv-up ==veth== msp-tpv-ed [bridge msp-tpv in the edge's OVS] msp-tpv-vx
       198.18.250.1/24 -> up1's default route -> inet -> server (198.18.251.10/32 beside its
       own address; inet routes it, and 198.18.250.0/24 back to up1)

  The tunnel ends are the MSP's own (the MSPMB's uplink address, the edge's tunnel address
  for that uplink, UDP 4789), so the underlay bridges' admission flows let it through; only
  the VNI differs from the homenet's, so OVS hands it to msp-tpv-vx. The Internet side is
  crossed too because the kernel forwards a packet that ovs-vswitchd sends into a veth in
  that send call: up1's and inet's forwarding is charged to the edge's OVS thread, on both
  paths alike.

  plain routed (RoutedPath): kernel forwarding only, one new veth per hop, through the
  namespaces the MSP path crosses up to the edge, then to the server:

    h1 =msp-r1= mspmb =msp-r2= ispA =msp-r3= inet =msp-r4= edge1 =msp-r5= server
       198.18.241.0/24 ... 198.18.245.0/24 (left .1, right .2); forwarding is enabled on
       the new interfaces only.

Everything created is named msp-* or uses the benchmark's own range (198.18.240.0/20),
lives inside the reference network's own namespaces (so it also disappears with them), and
remove() deletes it by name, whatever create() got to. Senders compute their own checksums
(`ethtool -K tx off`, as the reference hosts do: OVS 3.1 drops VXLAN-bound packets whose
checksum was left to offload).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from topologies.measure import ping
from topologies.ovsbox import CommandError, prepare_ovs_ports, run, wait_for
from topologies.plan import OVERLAY_MTU, UNDERLAY_MTU, ip_part

VXLAN_BRIDGE = "msp-tpv"
VXLAN_TUNNEL_PORT = "msp-tpv-vx"
VXLAN_VNI = 4242
VXLAN_NET = ipaddress.IPv4Network("198.18.250.0/24")
VXLAN_SERVER_IP = ipaddress.IPv4Address("198.18.251.10")  # the server's second address
ROUTED_FIRST_NET = 241  # 198.18.241.0/24 for the first hop, .242 for the second...
# Every subnet above lies here, a part of the benchmarking range the reference plan leaves free.
BENCH_RANGE = ipaddress.IPv4Network("198.18.240.0/20")


@dataclass(frozen=True)
class Endpoints:
    """Where a path's streams run: iperf3 client node and address, server node and address."""

    path: str
    client: str
    client_ip: str
    server: str
    server_ip: str


def _veth(node_a: Any, name_a: str, node_b: Any, name_b: str) -> None:
    """A veth pair created inside node_a's namespace, its peer moved into node_b's: it never
    exists in the root namespace."""
    run(["ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", str(node_b.pid)], node_a)


def _delete_link(node: Any, name: str) -> None:
    run(["ip", "link", "del", name], node, check=False)


def _endpoint(node: Any, intf: str, address: str, mtu: int, routes: Sequence[str] = ()) -> None:
    """An addressed interface that sends: own checksums, no IPv6 chatter, MTU, routes."""
    run(["sysctl", "-qw", f"net.ipv6.conf.{intf}.disable_ipv6=1"], node)
    lines = [f"link set {intf} mtu {mtu}", f"addr replace {address} dev {intf}", f"link set {intf} up", *routes]
    run(["ip", "-batch", "-"], node, input="\n".join(lines) + "\n")
    run(["ethtool", "-K", intf, "tx", "off"], node)


def check_free(net: Any, nodes: Iterable[str]) -> None:
    """Refuse to start if the benchmark's range is already used in these namespaces (call
    it before creating any path: a leftover of a crashed run, or a plan that took it)."""
    for name in nodes:
        for line in run(["ip", "-4", "-o", "addr", "show"], net[name]).splitlines():
            address = ipaddress.IPv4Interface(line.split()[3])
            intf = line.split()[1]
            if address.network.overlaps(BENCH_RANGE):
                raise RuntimeError(f"{name}: {intf} has {address}, inside the benchmark's own range "
                                   f"{BENCH_RANGE}: the comparison paths would clash with it")


def _ofport(box: Any, port: str) -> int:
    value = int(box.vsctl("get", "interface", port, "ofport").strip() or -1)
    if value <= 0:
        error = box.vsctl("--if-exists", "get", "interface", port, "error").strip()
        raise RuntimeError(f"{box.name}: OVS did not attach {port} (ofport {value}): {error}")
    return value


class VxlanPath:
    """Plain OVS VXLAN from h1 to the server through the MSPMB's and the edge's OVS, then
    the edge's upstream router and inet, like the MSP path."""

    def __init__(self, net: Any, isp: str, edge: str, client: str = "h1", server: str = "server") -> None:
        plan = net.plan
        homenet = plan.homenet
        if any(h.id == VXLAN_VNI for h in net.config.homenets):
            raise ValueError(f"VNI {VXLAN_VNI} is a homenet's id: the plain VXLAN path would take its tunnels")
        uplink = next((u for u in homenet.uplinks if u.name == isp), None)
        if uplink is None:
            raise ValueError(f"no uplink {isp!r} (uplinks: {', '.join(u.name for u in homenet.uplinks)})")
        site = plan.site(edge)
        self.net, self.edge, self.client, self.server = net, edge, client, server
        self.box, self.router, self.inet = plan.mspmb, site.router, plan.inet
        self.mspmb_uplink_ip = ip_part(plan.uplink_addresses[isp])
        self.edge_tunnel_ip = str(net.config.edge(edge).tunnel_ip(uplink.slot))
        self.links = ((client, "msp-tpv-h1", self.box, "msp-tpv-mb"),
                      (edge, "msp-tpv-ed", self.router, "msp-tpv-up"))
        self.endpoints = Endpoints("vxlan", client, str(VXLAN_NET[10]), server, str(VXLAN_SERVER_IP))
        self.gateway = str(VXLAN_NET[1])  # up1's end of the VXLAN segment
        self.server_intf, self.server_ip = plan.server.intf, ip_part(plan.server.ipv4)
        # inet's own routes for the path: (destination, via, dev)
        self.nodes = (client, self.box, edge, self.router, self.inet, server)
        self.inet_routes = ((f"{VXLAN_SERVER_IP}/32", self.server_ip, plan.server.inet_intf),
                            (str(VXLAN_NET), ip_part(site.router_transit_ipv4), site.inet_transit_intf))

    def create(self) -> None:
        net = self.net
        for node_a, name_a, node_b, name_b in self.links:
            _veth(net[node_a], name_a, net[node_b], name_b)
        prefix = VXLAN_NET.prefixlen
        _endpoint(net[self.client], "msp-tpv-h1", f"{self.endpoints.client_ip}/{prefix}", OVERLAY_MTU,
                  [f"route replace {VXLAN_SERVER_IP}/32 via {self.gateway} dev msp-tpv-h1"])
        router = net[self.router]
        run(["sysctl", "-qw", "net.ipv6.conf.msp-tpv-up.disable_ipv6=1", "net.ipv4.conf.msp-tpv-up.forwarding=1"],
            router)
        run(["ip", "-batch", "-"], router, input=f"link set msp-tpv-up mtu {OVERLAY_MTU}\n"
                                                 f"addr replace {self.gateway}/{prefix} dev msp-tpv-up\n"
                                                 "link set msp-tpv-up up\n")
        run(["ip", "addr", "replace", f"{VXLAN_SERVER_IP}/32", "dev", self.server_intf], net[self.server])
        run(["ip", "-batch", "-"], net[self.inet],
            input="".join(f"route replace {dst} via {via} dev {dev}\n" for dst, via, dev in self.inet_routes))
        # (box, its veth, tunnel options): the MSPMB's tunnel leaves by its uplink route like
        # the MSP's; the edge's is bound to its tunnel address for that uplink.
        ends = ((self.box, "msp-tpv-mb", [f"options:remote_ip={self.edge_tunnel_ip}"]),
                (self.edge, "msp-tpv-ed", [f"options:remote_ip={self.mspmb_uplink_ip}",
                                           f"options:local_ip={self.edge_tunnel_ip}"]))
        for box_name, veth, options in ends:
            box = net[box_name]
            prepare_ovs_ports(box, [veth], {veth: OVERLAY_MTU})
            box.vsctl("add-br", VXLAN_BRIDGE, "--", "set", "bridge", VXLAN_BRIDGE, "datapath_type=netdev",
                      "fail_mode=secure", "protocols=OpenFlow13", "other-config:disable-in-band=true")
            box.vsctl("add-port", VXLAN_BRIDGE, veth)
            box.vsctl("add-port", VXLAN_BRIDGE, VXLAN_TUNNEL_PORT, "--", "set", "interface", VXLAN_TUNNEL_PORT,
                      "type=vxlan", f"options:key={VXLAN_VNI}", *options)
            local, tunnel = _ofport(box, veth), _ofport(box, VXLAN_TUNNEL_PORT)
            box.ofctl("del-flows", VXLAN_BRIDGE)
            box.ofctl("add-flow", VXLAN_BRIDGE, f"in_port={local},actions=output:{tunnel}")
            box.ofctl("add-flow", VXLAN_BRIDGE, f"in_port={tunnel},actions=output:{local}")
        wait_for(lambda: ping(net[self.client], self.endpoints.server_ip, timeout_s=0.5), 20, interval=0.2,
                 what=f"{self.client} to reach {self.endpoints.server_ip} over the plain VXLAN path")

    def remove(self) -> None:
        """Delete the bridges (with their ports), the veths, inet's routes and the server's
        extra address, by name; errors are collected and the first raised once everything
        was tried."""
        errors: list[Exception] = []
        for box_name in (self.box, self.edge):
            try:
                self.net[box_name].vsctl("--if-exists", "del-br", VXLAN_BRIDGE)
            except (CommandError, RuntimeError) as err:
                errors.append(err)
        for node_a, name_a, _node_b, _name_b in self.links:
            _delete_link(self.net[node_a], name_a)
        for dst, via, dev in self.inet_routes:
            run(["ip", "route", "del", dst, "via", via, "dev", dev], self.net[self.inet], check=False)
        run(["ip", "addr", "del", f"{VXLAN_SERVER_IP}/32", "dev", self.server_intf], self.net[self.server],
            check=False)
        if errors:
            raise errors[0]


class RoutedPath:
    """Kernel routing from h1 to the server through the same namespaces, one veth per hop."""

    def __init__(self, net: Any, chain: Sequence[str]) -> None:
        if len(chain) < 2:
            raise ValueError(f"a routed path needs at least two nodes, got {list(chain)}")
        if len(chain) - 1 > 9:
            raise ValueError(f"at most 9 hops fit the benchmark's subnets, got {len(chain) - 1}")
        self.net, self.chain = net, tuple(chain)
        self.nodes = self.chain
        self.nets = [ipaddress.IPv4Network(f"198.18.{ROUTED_FIRST_NET + i}.0/24") for i in range(len(chain) - 1)]
        # hop i joins chain[i] (left, .1) and chain[i+1] (right, .2)
        self.links = [(chain[i], f"msp-r{i + 1}-{chain[i]}", chain[i + 1], f"msp-r{i + 1}-{chain[i + 1]}")
                      for i in range(len(chain) - 1)]
        too_long = [name for link in self.links for name in (link[1], link[3]) if len(name) > 15]
        if too_long:
            raise ValueError(f"interface names longer than 15 characters: {too_long} (shorter node names?)")
        self.endpoints = Endpoints("routed", chain[0], str(self.nets[0][1]), chain[-1], str(self.nets[-1][2]))

    def _address(self, hop: int, side: int) -> str:
        return str(self.nets[hop][side])

    def create(self) -> None:
        net, last = self.net, len(self.links) - 1
        for node_a, name_a, node_b, name_b in self.links:
            _veth(net[node_a], name_a, net[node_b], name_b)
        client_net, server_net = self.nets[0], self.nets[-1]
        for index, node_name in enumerate(self.chain):
            node = net[node_name]
            left = self.links[index - 1][3] if index > 0 else None
            right = self.links[index][1] if index <= last else None
            routes = []
            if right is not None and index < last:  # towards the server's subnet
                routes.append(f"route replace {server_net} via {self._address(index, 2)} dev {right}")
            if left is not None and index > 1:  # back towards the client's subnet
                routes.append(f"route replace {client_net} via {self._address(index - 1, 1)} dev {left}")
            if index in (0, len(self.chain) - 1):
                intf = right if index == 0 else left
                assert intf is not None
                hop, side = (0, 1) if index == 0 else (last, 2)
                _endpoint(node, intf, f"{self._address(hop, side)}/24", UNDERLAY_MTU, routes)
                continue
            assert left is not None and right is not None
            run(["sysctl", "-qw", *[f"net.ipv6.conf.{i}.disable_ipv6=1" for i in (left, right)],
                 *[f"net.ipv4.conf.{i}.forwarding=1" for i in (left, right)]], node)
            lines = [f"addr replace {self._address(index - 1, 2)}/24 dev {left}",
                     f"addr replace {self._address(index, 1)}/24 dev {right}",
                     f"link set {left} mtu {UNDERLAY_MTU}", f"link set {right} mtu {UNDERLAY_MTU}",
                     f"link set {left} up", f"link set {right} up", *routes]
            run(["ip", "-batch", "-"], node, input="\n".join(lines) + "\n")
        wait_for(lambda: ping(net[self.chain[0]], self.endpoints.server_ip, timeout_s=0.5), 20, interval=0.2,
                 what=f"{self.chain[0]} to reach {self.endpoints.server_ip} over the plain routed path")

    def remove(self) -> None:
        """Delete every veth by name (their addresses and routes go with them)."""
        for node_a, name_a, _node_b, _name_b in self.links:
            _delete_link(self.net[node_a], name_a)
