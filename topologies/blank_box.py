r"""Zero configuration: a blank MSPMB that becomes multihomed by itself.

     bbh1 --- bbmb ---- bbispA (dnsmasq) ---+
                  \                         |--- bbinet --- bbedge (stand-in edge)
                   --- bbispB (dnsmasq) ----+      |
                                                  bbmsp: the MSP (OVSDB manager, ssl:198.19.64.10:6640)

  bbmb    the MSPMB: its own Open vSwitch, the ports bbmb-lan1/-ispA/-ispB, nothing else;
          the box agent (msp_controller/box/agent.py) knows the MSP's address and the box's
          key + certificate (msp-pki), and starts when start_box() is called.
  bbispN  ISP N: 198.18.4N.1/24 on its customer side, DHCP by dnsmasq (topologies/isp_dhcp.py:
          the box's uplink MAC gets 198.18.4N.100 unless renumbered); 198.18.14N.0/30 to bbinet.
  bbinet  routes the ISPs' access networks, the edge's underlay 198.18.50.0/24 (.11, .12 on the
          edge's br-up, one tunnel address per uplink slot) and the MSP's 198.19.64.0/24.
  bbedge  a stand-in edge: br-up (standalone) made here; br-msp and its per-homenet tunnels
          (BFD on, ending at the leased addresses) made by the MSP over OVSDB.
  bbmsp   the MSP's namespace: every box reaches it through the ISPs' and bbinet's routes.

No OpenFlow controller runs here: this variant shows the OVSDB half (bridges, tunnels, BFD,
leases, renumbering, control-channel failover). Everything lives in namespaces we create.

    with BlankBoxNetwork(run_dir) as bb:
        bb.start_box(); bb.wait_multihomed(10)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Self

from mininet.net import Mininet
from mininet.topo import Topo

from msp_controller.identity import pki
from msp_controller.model.config import load_config
from topologies.isp_dhcp import IspDhcp
from topologies.nodes import RoutedHost
from topologies.ovsbox import OVS_SCHEMA, OvsBox, _Subreaper, link_exists, prepare_ovs_ports, run, wait_for

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, "etc", "blank_box.toml")
MSP_IP = "198.19.64.10"
OVSDB_PORT = 6640
BOX, EDGE, MSP, INET = "bbmb", "bbedge", "bbmsp", "bbinet"
ISPS = {"ispA": 1, "ispB": 2}
UPLINKS = {f"br-{isp}": f"{BOX}-{isp}" for isp in ISPS}
EDGE_UNDERLAY = ["198.18.50.11/24", "198.18.50.12/24"]


def isp_node(isp: str) -> str:
    return f"bb{isp}"


def access_gateway(isp: str) -> str:
    return f"198.18.4{ISPS[isp]}.1/24"


class SslOvsBox(OvsBox):
    """An OvsBox whose ovsdb-server reads its key, certificate and CA from the db's SSL table,
    so that it can dial its manager over TLS (OvsBox starts it without them)."""

    def start_ovs(self, other_config: Any = None) -> None:
        if set(self.ovs_pids()) == {"ovsdb-server", "ovs-vswitchd"}:
            return
        self.stop_ovs()
        os.makedirs(self.ovs_dir, mode=0o755)
        db = os.path.join(self.ovs_dir, "conf.db")
        run(["ovsdb-tool", "create", db, OVS_SCHEMA], where=self.name)
        with _Subreaper():
            run(["ovsdb-server", db, f"--remote=punix:{self.db_socket}",
                 "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                 "--private-key=db:Open_vSwitch,SSL,private_key",
                 "--certificate=db:Open_vSwitch,SSL,certificate",
                 "--ca-cert=db:Open_vSwitch,SSL,ca_cert",
                 f"--pidfile={self.pidfile('ovsdb-server')}",
                 f"--log-file={os.path.join(self.ovs_dir, 'ovsdb-server.log')}",
                 "--detach", "--no-chdir"], self, env=self.ovs_env)
        self.vsctl("init", wait=False)
        self.vsctl("set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true", wait=False)
        self._spawn_vswitchd()
        if set(self.ovs_pids()) != {"ovsdb-server", "ovs-vswitchd"}:
            raise RuntimeError(f"{self.name}: OVS did not stay up; see the logs in {self.ovs_dir}")


class BlankBoxTopo(Topo):
    def build(self, run_dir: str = "/run/msp-bb") -> None:
        self.addHost("bbh1", cls=RoutedHost, ip=None, addresses={"bbh1-eth0": ["198.51.100.10/24"]})
        self.addHost(BOX, cls=SslOvsBox, ip=None, run_dir=run_dir)
        self.addHost(EDGE, cls=SslOvsBox, ip=None, run_dir=run_dir)
        inet_addrs: dict[str, list[str]] = {"bbinet-edge": ["198.18.50.1/24"], "bbinet-msp": ["198.19.64.1/24"]}
        inet_routes = []
        for isp, n in ISPS.items():
            self.addHost(isp_node(isp), cls=RoutedHost, ip=None, forwarding=True,
                         addresses={f"bb{isp}-cust": [access_gateway(isp)], f"bb{isp}-inet": [f"198.18.14{n}.2/30"]},
                         routes=[f"route replace default via 198.18.14{n}.1 dev bb{isp}-inet"])
            inet_addrs[f"bbinet-{isp}"] = [f"198.18.14{n}.1/30"]
            inet_routes.append(f"route replace 198.18.4{n}.0/24 via 198.18.14{n}.2 dev bbinet-{isp}")
        self.addHost(INET, cls=RoutedHost, ip=None, forwarding=True, addresses=inet_addrs, routes=inet_routes)
        self.addHost(MSP, cls=RoutedHost, ip=None, addresses={"bbmsp-eth0": [f"{MSP_IP}/24"]},
                     routes=["route replace default via 198.19.64.1 dev bbmsp-eth0"])
        self.addLink("bbh1", BOX, intfName1="bbh1-eth0", intfName2=f"{BOX}-lan1")
        for isp in ISPS:
            self.addLink(BOX, isp_node(isp), intfName1=UPLINKS[f"br-{isp}"], intfName2=f"bb{isp}-cust")
            self.addLink(isp_node(isp), INET, intfName1=f"bb{isp}-inet", intfName2=f"bbinet-{isp}")
        self.addLink(EDGE, INET, intfName1="bbedge-up", intfName2="bbinet-edge")
        self.addLink(MSP, INET, intfName1="bbmsp-eth0", intfName2="bbinet-msp")


class BlankBoxNetwork:
    def __init__(self, run_dir: str, config_path: str = CONFIG) -> None:
        self.run_dir = os.path.abspath(run_dir)
        self.config_path = config_path
        self.config = load_config(config_path)
        self.pki_dir = os.path.join(self.run_dir, "pki")
        self.net: Mininet | None = None
        self.dhcp: dict[str, IspDhcp] = {}
        self.manager: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.box_started_at: float | None = None

    def __getitem__(self, name: str) -> Any:
        assert self.net is not None
        return self.net[name]

    # -- life cycle

    def start(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        self.make_identities()
        self.net = Mininet(topo=BlankBoxTopo(run_dir=self.run_dir), controller=None, build=False)
        try:
            self.net.build()
            self.net.start()
            self.start_edge_underlay()
            for isp in ISPS:
                dhcp = IspDhcp(self[isp_node(isp)], f"bb{isp}-cust", access_gateway(isp),
                               os.path.join(self.run_dir, isp_node(isp)))
                self.dhcp[isp] = dhcp
                dhcp.set_host(self.uplink_mac(isp), self.address(isp, 100))
                dhcp.start()
            self.start_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in (self.agent, self.manager):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.agent = self.manager = None
        for dhcp in self.dhcp.values():
            dhcp.stop()
        net, self.net = self.net, None
        if net is not None:
            for node in net.hosts:
                if isinstance(node, OvsBox):
                    node.stop_ovs()
            net.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- pieces

    def make_identities(self) -> None:
        from pathlib import Path
        shutil.rmtree(self.pki_dir, ignore_errors=True)
        pki.init(Path(self.pki_dir))
        pki.box(Path(self.pki_dir), self.config.homenet("home1").dpid, "home1-mspmb")
        pki.box(Path(self.pki_dir), self.config.edge("edge1").dpid, "edge1")

    def start_edge_underlay(self) -> None:
        edge = self[EDGE]
        prepare_ovs_ports(edge, ["bbedge-up"])
        edge.vsctl("--may-exist", "add-br", "br-up", "--", "set", "bridge", "br-up", "datapath_type=netdev",
                   "fail_mode=standalone", "other-config:disable-in-band=true",
                   "--", "--may-exist", "add-port", "br-up", "bbedge-up")
        wait_for(lambda: link_exists("br-up", edge), 10, what="the edge's br-up")
        edge.run("ip", "-batch", "-", input="link set br-up up\n" + "".join(
            f"addr replace {a} dev br-up\n" for a in EDGE_UNDERLAY)
            + "route replace default via 198.18.50.1 dev br-up\n")
        ident = os.path.join(self.pki_dir, "boxes", "edge1")
        edge.vsctl("set-ssl", f"{ident}/key.pem", f"{ident}/cert.pem", f"{ident}/cacert.pem")
        target = f"ssl:{MSP_IP}:{OVSDB_PORT}"
        edge.vsctl("set-manager", target, "--", "set", "manager", target, "max_backoff=1000")

    def start_manager(self) -> None:
        log = open(os.path.join(self.run_dir, "manager.log"), "w")
        self.manager = subprocess.Popen(
            ["mnexec", "-a", str(self[MSP].pid), sys.executable, "-m", "msp_controller.box.manager",
             "--config", self.config_path, "--pki", self.pki_dir, "--listen", f"{MSP_IP}:{OVSDB_PORT}",
             "--state", os.path.join(self.run_dir, "state.sqlite")],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: "listening" in open(os.path.join(self.run_dir, "manager.log")).read()
                 or self.manager.poll() is not None, 15, what="the OVSDB manager")  # type: ignore[union-attr]
        if self.manager.poll() is not None:
            raise RuntimeError(f"the OVSDB manager exited; see {self.run_dir}/manager.log")

    def start_box(self) -> float:
        """Start the blank box's agent; returns the moment (time.monotonic())."""
        box = self[BOX]
        log = open(os.path.join(self.run_dir, "agent.log"), "w")
        argv = ["mnexec", "-a", str(box.pid), sys.executable, "-m", "msp_controller.box.agent",
                "--msp", MSP_IP, "--ovsdb-port", str(OVSDB_PORT),
                "--identity", os.path.join(self.pki_dir, "boxes", "home1-mspmb"),
                "--lan", f"{BOX}-lan1", "--state-dir", os.path.join(self.run_dir, "agent")]
        for bridge, port in UPLINKS.items():
            argv += ["--uplink", f"{bridge}={port}"]
        self.box_started_at = time.monotonic()
        self.agent = subprocess.Popen(argv, cwd=REPO_ROOT, env=box.ovs_env, stdout=log, stderr=subprocess.STDOUT)
        return self.box_started_at

    # -- facts

    def uplink_mac(self, isp: str) -> str:
        """The MAC the box's DHCP client sends from: the agent gives its underlay bridge's
        internal port the ISP veth's MAC."""
        return self[BOX].intf(UPLINKS[f"br-{isp}"]).MAC()

    @staticmethod
    def address(isp: str, host: int) -> str:
        return f"198.18.4{ISPS[isp]}.{host}"

    def bfd_up(self, node: str, port: str) -> bool:
        try:
            out = self[node].vsctl("get", "interface", port, "bfd_status:forwarding", timeout=2)
        except Exception:
            return False
        return out.strip().strip('"') == "true"

    def box_tunnels_up(self) -> dict[str, bool]:
        return {isp: self.bfd_up(BOX, f"edge1-{isp}") for isp in ISPS}

    def edge_remote(self, isp: str) -> str | None:
        try:
            return self[EDGE].vsctl("get", "interface", f"hn1-{isp}", "options:remote_ip", timeout=2).strip().strip('"')
        except Exception:
            return None

    def start_probe(self, isp: str) -> subprocess.Popen:
        """500 packets/s from bbh1 into the box's tunnel on this ISP (a static flow on br-home
        stands in for the OpenFlow controller), so that the edge's counters show at once
        when the tunnel carries again. Stop it with stop_probe()."""
        self[BOX].ofctl("add-flow", "br-home", f"priority=100,in_port={BOX}-lan1,actions=output:edge1-{isp}")
        host = self["bbh1"]
        run(["ip", "neigh", "replace", "198.51.100.99", "lladdr", "02:00:00:00:00:99", "dev", "bbh1-eth0"], host)
        return subprocess.Popen(["mnexec", "-a", str(host.pid), "ping", "-q", "-i", "0.002", "198.51.100.99"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def stop_probe(proc: subprocess.Popen) -> None:
        proc.terminate()
        proc.wait(5)

    def edge_rx_packets(self, isp: str) -> int:
        """Packets the edge's tunnel to this uplink has taken in, read live from the datapath
        (OVSDB's statistics lag by 5 s). The port takes only what comes from its remote_ip:
        after a renumbering, nothing until it follows."""
        try:
            out = self[EDGE].ofctl("dump-ports", "br-msp", f"hn1-{isp}")
        except Exception:
            return 0
        match = re.search(r"rx pkts=(\d+)", out)
        return int(match.group(1)) if match else 0

    def wait_multihomed(self, timeout: float) -> float:
        wait_for(lambda: all(self.box_tunnels_up().values()), timeout, what="both ISPs' tunnels up (BFD)")
        return time.monotonic()

    def manager_connected(self) -> bool:
        try:
            return self[BOX].vsctl("get", "manager", ".", "is_connected", timeout=2).strip() == "true"
        except Exception:
            return False

    def agent_status(self) -> dict:
        import json
        try:
            with open(os.path.join(self.run_dir, "agent", "status.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def renew(self, isp: str) -> None:
        """Make the box's DHCP client renew its lease on this ISP now (SIGUSR1 to udhcpc)."""
        pid_file = os.path.join(self.run_dir, "agent", f"udhcpc-br-{isp}.pid")
        with open(pid_file) as handle:
            os.kill(int(handle.read().strip()), 10)

    def isp_blackhole(self, isp: str, on: bool = True) -> None:
        """ISP drops everything it would forward (nftables in its namespace)."""
        node = self[isp_node(isp)]
        if on:
            run(["nft", "-f", "-"], node, input="table inet bbcut {\n chain cut {\n"
                "  type filter hook forward priority 0; policy drop;\n }\n}\n")
        else:
            run(["nft", "delete", "table", "inet", "bbcut"], node)


__all__ = ["BlankBoxNetwork", "BlankBoxTopo"]
