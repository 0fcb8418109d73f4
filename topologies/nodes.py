"""The reference network's node classes (Mininet hosts): RoutedHost (addresses, routes,
forwarding), IspRouter (counters, rate limit), MspmbBox and EdgeBox (their own OVS,
provisioned from the MSP config) and BgpRouter (BIRD).
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mininet.node import Host

from msp_controller.dataplane.provision import (
    edge_commands,
    edge_routes,
    mspmb_commands,
    mspmb_routes,
)
from msp_controller.model.config import MspConfig
from topologies.bird import (
    RouterConfig,
    bird_paths,
    bird_pid,
    render_config,
    start_bird,
    stop_bird,
)
from topologies.faults import install_counters
from topologies.ovsbox import (
    DEFAULT_RUN_DIR,
    OvsBox,
    add_mgmt_link,
    del_mgmt_link,
    prepare_ovs_ports,
    run,
)
from topologies.plan import OVERLAY_MTU, UNDERLAY_MTU


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
    # Static means static: router advertisements add no address or route (autoconf_host.py
    # turns a host to SLAAC).
    settings += [f"net.ipv6.conf.{intf}.accept_ra=0" for intf in addresses]
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
               **params: Any) -> dict:
        self.msp_config = msp_config
        self.edge = msp_config.edge(edge) if msp_config and edge else None
        return super().config(**params)

    def provision(self) -> None:
        config, edge = self.msp_config, self.edge
        if config is None or edge is None:
            return
        mtu = {edge.underlay_port: UNDERLAY_MTU, edge.internet_port: OVERLAY_MTU}
        prepare_ovs_ports(self, mtu, mtu)
        for command in edge_commands(config, edge):
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

