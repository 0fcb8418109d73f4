r"""Zero configuration: a blank MSPMB that becomes multihomed by itself.

     bbh1 --- bbmb ---- bbispA (dnsmasq) ---+
     (DHCP)       \                         |--- bbinet --- bbedge (edge1) --- bbinet --- bbsrv
                   --- bbispB (dnsmasq) ----+      |        underlay .11/.12   Internet port    203.0.113.10
                                                  bbmsp: the MSP (ryu-manager, OVSDB manager)

  bbmb    the MSPMB: its own Open vSwitch, the ports bbmb-lan1/-ispA/-ispB, nothing else;
          the box agent (msp_controller/box/agent.py) knows the MSP's address and the box's
          key + certificate (msp-pki), and starts when start_box() is called.
  bbh1    an unmodified host: no address until the controller's DHCP answers it (busybox
          udhcpc, started with the box: both are powered on together).
  bbispN  ISP N: 198.18.4N.1/24 on its customer side, DHCP by dnsmasq (topologies/isp_dhcp.py:
          the box's uplink MAC gets 198.18.4N.100 unless renumbered); 198.18.14N.0/30 to bbinet.
  bbinet  routes the ISPs' access networks, the edge's underlay 198.18.50.0/24 (.11, .12 on the
          edge's br-up, one tunnel address per uplink slot), the MSP's 198.19.64.0/24, the
          edge's Internet side 198.18.51.0/24 (the PI prefix 198.51.100.0/24 via the edge's
          198.18.51.2) and the server's 203.0.113.0/24.
  bbedge  edge1 as in the reference topology: br-msp (the Internet port, one flow-based VXLAN
          port per uplink slot) and br-up, made with dataplane/provision.py's edge_commands;
          flows and groups from the controller over OpenFlow/TLS. Its end of each tunnel is
          the box's leased address, which the controller learns by REST from the OVSDB manager.
  bbmsp   the MSP's namespace, reached by every box over the ISPs and bbinet (no management
          link): ryu-manager msp_controller.app (OpenFlow over TLS on 198.19.64.10:6653, REST on
          198.19.64.10:8080, tokens required) and the OVSDB manager (ssl:198.19.64.10:6640,
          --report-to the REST API).

Everything lives in namespaces we create; every process is stopped by its PID.

    with BlankBoxNetwork(run_dir) as bb:
        bb.start_box(); bb.wait_multihomed(10); bb.wait_host_reaches_server(20)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

from mininet.net import Mininet
from mininet.topo import Topo

from msp_controller.dataplane.provision import edge_commands, edge_routes
from msp_controller.identity import pki
from msp_controller.model.config import edge_slot_port, load_config
from topologies.controller import operator_token
from topologies.isp_dhcp import IspDhcp
from topologies.nodes import RoutedHost
from topologies.ovsbox import OVS_SCHEMA, OvsBox, _Subreaper, link_exists, prepare_ovs_ports, run, wait_for
from topologies.plan import OVERLAY_MTU, UNDERLAY_MTU

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, "etc", "blank_box.toml")
MSP_IP = "198.19.64.10"
OVSDB_PORT = 6640
OPENFLOW_PORT = 6653
# The controller's REST API on the MSP's address (tokens required: etc/blank_box.toml), where
# the OVSDB manager and the edge's shaper reach it.
REST = f"{MSP_IP}:8080"
BOX, EDGE, MSP, INET, HOST, SERVER = "bbmb", "bbedge", "bbmsp", "bbinet", "bbh1", "bbsrv"
SERVER_IP = "203.0.113.10"
HOST_INTF = "bbh1-eth0"
ISPS = {"ispA": 1, "ispB": 2}
UPLINKS = {f"br-{isp}": f"{BOX}-{isp}" for isp in ISPS}
EDGE_UNDERLAY = ["198.18.50.11/24", "198.18.50.12/24"]
PROBE_PORTS = {"ispA": 9001, "ispB": 9002}  # the server's UDP ports for each ISP's probe
PROBE_SOURCE = "198.51.100.99"  # a PI address nobody holds: nothing answers the probes


def isp_node(isp: str) -> str:
    return f"bb{isp}"


def access_gateway(isp: str) -> str:
    return f"198.18.4{ISPS[isp]}.1/24"


# ISP A is dual-stack (router advertisements for a /64: SLAAC), ISP B offers IPv4 only.
IPV6_PREFIXES = {"ispA": "2001:db8:41::/64"}


# A probe into one ISP's tunnel, sent from the box's namespace as the box itself would:
# VXLAN (the homenet's key) from the address the ISP leased (the socket is bound to the
# uplink's device, so its source follows the lease), to the edge's address for that slot.
# Inside, a UDP packet from the PI prefix to the server, numbered: the server counts what
# the edge let through. Sends fail (no address, no route) while the uplink has no lease.
PROBE_SENDER = r"""
import socket, struct, sys, time
device, edge_ip, vni, src, dst, port, rate = sys.argv[1:8]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
# A datapath drops what it cannot send; it never holds it. While the uplink has no address,
# the kernel queues this device-bound socket's packets on an on-link neighbour that never
# resolves (freed only after 3 ARP tries, 3 s): with the default buffer those packets fill it
# and block every later send, new address or not. A buffer larger than the neighbour's queue
# (unres_qlen_bytes) lets the queue drop them instead; MSG_DONTWAIT drops rather than waits.
sock.setsockopt(socket.SOL_SOCKET, 32, 4 << 20)  # SO_SNDBUFFORCE (root)
def csum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
interval, seq, due = 1.0 / float(rate), 0, time.monotonic()
while True:
    payload = struct.pack("!Id", seq, time.time())
    udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xffff, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", csum(header)) + header[12:]
    frame = bytes.fromhex("020000000002" "020000000001" "0800") + header + udp
    try:
        sock.sendto(struct.pack("!II", 0x08000000, int(vni) << 8) + frame, socket.MSG_DONTWAIT, (edge_ip, 4789))
    except OSError:
        pass
    seq += 1
    due += interval
    time.sleep(max(0.0, due - time.monotonic()))
"""

# At the server: every probe packet that arrived, as "<port> <seq> <arrival time>" lines.
PROBE_SINK = r"""
import selectors, socket, struct, sys, time
out = open(sys.argv[1], "w", buffering=1)
selector = selectors.DefaultSelector()
for port in sys.argv[2:]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(port)))
    selector.register(sock, selectors.EVENT_READ, int(port))
while True:
    for key, _ in selector.select():
        data = key.fileobj.recv(2048)
        if len(data) >= 4:
            out.write("%d %d %.6f\n" % (key.data, struct.unpack("!I", data[:4])[0], time.time()))
"""


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
        self.addHost(HOST, cls=RoutedHost, ip=None, addresses={HOST_INTF: []})
        self.addHost(BOX, cls=SslOvsBox, ip=None, run_dir=run_dir)
        # The edge is the MSP's own box: its OpenFlow reaches the controller over the MSP's own
        # network (bbedge-mgmt), not through br-up, which forwards only once programmed.
        self.addHost(EDGE, cls=SslOvsBox, ip=None, run_dir=run_dir)
        inet_addrs: dict[str, list[str]] = {"bbinet-edge": ["198.18.50.1/24"], "bbinet-msp": ["198.19.64.1/24"],
                                            "bbinet-einet": ["198.18.51.1/24"], "bbinet-srv": ["203.0.113.1/24"],
                                            "bbinet-emgmt": ["198.19.65.1/24"]}
        # The PI prefix is routed to the edge's Internet port (no BGP in this topology).
        inet_routes = ["route replace 198.51.100.0/24 via 198.18.51.2 dev bbinet-einet"]
        for isp, n in ISPS.items():
            self.addHost(isp_node(isp), cls=RoutedHost, ip=None, forwarding=True,
                         addresses={f"bb{isp}-cust": [access_gateway(isp)], f"bb{isp}-inet": [f"198.18.14{n}.2/30"]},
                         routes=[f"route replace default via 198.18.14{n}.1 dev bb{isp}-inet"])
            inet_addrs[f"bbinet-{isp}"] = [f"198.18.14{n}.1/30"]
            inet_routes.append(f"route replace 198.18.4{n}.0/24 via 198.18.14{n}.2 dev bbinet-{isp}")
        self.addHost(INET, cls=RoutedHost, ip=None, forwarding=True, addresses=inet_addrs, routes=inet_routes,
                     mtu={"bbinet-einet": OVERLAY_MTU})
        self.addHost(MSP, cls=RoutedHost, ip=None, addresses={"bbmsp-eth0": [f"{MSP_IP}/24"]},
                     routes=["route replace default via 198.19.64.1 dev bbmsp-eth0"])
        self.addHost(SERVER, cls=RoutedHost, ip=None, addresses={"bbsrv-eth0": [f"{SERVER_IP}/24"]},
                     routes=["route replace default via 203.0.113.1 dev bbsrv-eth0"])
        self.addLink(HOST, BOX, intfName1=HOST_INTF, intfName2=f"{BOX}-lan1")
        for isp in ISPS:
            self.addLink(BOX, isp_node(isp), intfName1=UPLINKS[f"br-{isp}"], intfName2=f"bb{isp}-cust")
            self.addLink(isp_node(isp), INET, intfName1=f"bb{isp}-inet", intfName2=f"bbinet-{isp}")
        self.addLink(EDGE, INET, intfName1="bbedge-up", intfName2="bbinet-edge")
        self.addLink(EDGE, INET, intfName1="bbedge-inet", intfName2="bbinet-einet")
        self.addLink(EDGE, INET, intfName1="bbedge-mgmt", intfName2="bbinet-emgmt")
        self.addLink(MSP, INET, intfName1="bbmsp-eth0", intfName2="bbinet-msp")
        self.addLink(SERVER, INET, intfName1="bbsrv-eth0", intfName2="bbinet-srv")


class BlankBoxNetwork:
    def __init__(self, run_dir: str, config_path: str = CONFIG) -> None:
        self.run_dir = os.path.abspath(run_dir)
        self.config_path = config_path
        self.config = load_config(config_path)
        self.homenet = self.config.homenet("home1")
        self.token = operator_token(config_path) or ""
        self.pki_dir = os.path.join(self.run_dir, "pki")
        self.net: Mininet | None = None
        self.dhcp: dict[str, IspDhcp] = {}
        self.controller: subprocess.Popen | None = None
        self.manager: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.host_dhcp: subprocess.Popen | None = None
        self.edge_shaper: subprocess.Popen | None = None
        self.sink: subprocess.Popen | None = None
        self.probes: dict[str, subprocess.Popen] = {}
        self.box_started_at: float | None = None  # time.monotonic()
        self.box_started_wall: float | None = None  # time.time(), for the ping and probe timestamps

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
            self.start_controller()
            self.start_edge()
            for isp in ISPS:
                dhcp = IspDhcp(self[isp_node(isp)], f"bb{isp}-cust", access_gateway(isp),
                               os.path.join(self.run_dir, isp_node(isp)), IPV6_PREFIXES.get(isp))
                self.dhcp[isp] = dhcp
                dhcp.set_host(self.uplink_mac(isp), self.address(isp, 100))
                dhcp.start()
            self.start_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in (*self.probes.values(), self.sink, self.host_dhcp, self.agent, self.manager, self.edge_shaper):
            _end(proc)
        self.probes = {}
        self.sink = self.host_dhcp = self.agent = self.manager = self.edge_shaper = None
        if self.controller is not None and self.controller.poll() is None:
            os.killpg(self.controller.pid, signal.SIGTERM)  # its own session: ryu-manager and children
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.controller.pid, signal.SIGKILL)
                self.controller.wait()
        self.controller = None
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
        shutil.rmtree(self.pki_dir, ignore_errors=True)
        pki.init(Path(self.pki_dir))
        pki.box(Path(self.pki_dir), self.homenet.dpid, "home1-mspmb")
        pki.box(Path(self.pki_dir), self.config.edge("edge1").dpid, "edge1")

    def start_controller(self, timeout: float = 30.0) -> None:
        """ryu-manager with the MSP app in the MSP's namespace: OpenFlow over TLS (the MSP's CA
        and the controller's certificate from msp-pki), REST on the MSP's address (tokens)."""
        ryu_manager = os.path.join(os.path.dirname(sys.executable), "ryu-manager")
        host, port = REST.split(":")
        keys = os.path.join(self.pki_dir, "controller")
        log = open(os.path.join(self.run_dir, "controller.log"), "ab")
        self.controller = subprocess.Popen(
            ["mnexec", "-a", str(self[MSP].pid), ryu_manager,
             "--ofp-listen-host", MSP_IP, "--ofp-ssl-listen-port", str(OPENFLOW_PORT),
             "--ctl-privkey", os.path.join(keys, "key.pem"), "--ctl-cert", os.path.join(keys, "cert.pem"),
             "--ca-certs", os.path.join(self.pki_dir, "ca", "cacert.pem"),
             "--wsapi-host", host, "--wsapi-port", port, "msp_controller.app"],
            cwd=REPO_ROOT, env=dict(os.environ, MSP_CONFIG=self.config_path, PYTHONUNBUFFERED="1",
                                    MSP_STATE=os.path.join(self.run_dir, "state.sqlite")),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def listening() -> bool:
            out = run(["ss", "-Hltn"], self[MSP], check=False)
            return f"{MSP_IP}:{OPENFLOW_PORT}" in out and REST in out

        wait_for(lambda: listening() or self.controller.poll() is not None,  # type: ignore[union-attr]
                 timeout, what="the controller to listen")
        if self.controller.poll() is not None:
            raise RuntimeError(f"the controller exited; see {self.run_dir}/controller.log")

    def start_edge(self) -> None:
        """edge1 as the reference topology makes it (provision.py), its controller over TLS."""
        edge, spec = self[EDGE], self.config.edge("edge1")
        mtu = {spec.underlay_port: UNDERLAY_MTU, spec.internet_port: OVERLAY_MTU}
        prepare_ovs_ports(edge, mtu, mtu)
        ident = os.path.join(self.pki_dir, "boxes", "edge1")
        edge.vsctl("set-ssl", f"{ident}/key.pem", f"{ident}/cert.pem", f"{ident}/cacert.pem")
        for command in edge_commands(self.config, spec):
            edge.vsctl(*[f"ssl:{a[4:]}" if a.startswith("tcp:") else a for a in command])
        wait_for(lambda: link_exists(spec.underlay_bridge, edge), 10, what="the edge's br-up")
        run(["sysctl", "-qw", f"net.ipv6.conf.{spec.underlay_bridge}.disable_ipv6=1"], edge)
        run(["ip", "-batch", "-"], edge, input="".join(" ".join(c) + "\n" for c in edge_routes(spec))
            + f"link set {spec.underlay_bridge} mtu {UNDERLAY_MTU}\n"
            + "addr replace 198.19.65.2/24 dev bbedge-mgmt\nlink set bbedge-mgmt up\n"
            + f"route replace {MSP_IP}/32 via 198.19.65.1 dev bbedge-mgmt\n")

    def start_manager(self) -> None:
        log = open(os.path.join(self.run_dir, "manager.log"), "w")
        self.manager = subprocess.Popen(
            ["mnexec", "-a", str(self[MSP].pid), sys.executable, "-m", "msp_controller.box.manager",
             "--config", self.config_path, "--pki", self.pki_dir, "--listen", f"{MSP_IP}:{OVSDB_PORT}",
             "--report-to", f"http://{REST}", "--state", os.path.join(self.run_dir, "state.sqlite")],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, MSP_TOKEN=self.token))
        wait_for(lambda: "listening" in open(os.path.join(self.run_dir, "manager.log")).read()
                 or self.manager.poll() is not None, 15, what="the OVSDB manager")  # type: ignore[union-attr]
        if self.manager.poll() is not None:
            raise RuntimeError(f"the OVSDB manager exited; see {self.run_dir}/manager.log")

    def start_edge_shaper(self) -> None:
        """The edge's shaper (msp_controller/box/edge_shaper.py), in the edge's namespace: the
        downstream shaping of every homenet's policy on its underlay port, from REST."""
        log = open(os.path.join(self.run_dir, "edge-shaper.log"), "w")
        self.edge_shaper = subprocess.Popen(
            ["mnexec", "-a", str(self[EDGE].pid), sys.executable, "-m", "msp_controller.box.edge_shaper",
             "--api", f"http://{REST}", "--edge", "edge1", "--port", self.config.edge("edge1").underlay_port],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, MSP_TOKEN=self.token))

    def start_box(self, host: bool = True) -> float:
        """Power the blank box on (its agent) and, with host, the host behind it (its DHCP
        client); returns the moment (time.monotonic())."""
        box = self[BOX]
        log = open(os.path.join(self.run_dir, "agent.log"), "w")
        argv = ["mnexec", "-a", str(box.pid), sys.executable, "-m", "msp_controller.box.agent",
                "--msp", MSP_IP, "--ovsdb-port", str(OVSDB_PORT),
                "--identity", os.path.join(self.pki_dir, "boxes", "home1-mspmb"),
                "--lan", f"{BOX}-lan1", "--state-dir", os.path.join(self.run_dir, "agent")]
        for bridge, port in UPLINKS.items():
            argv += ["--uplink", f"{bridge}={port}"]
        self.box_started_at, self.box_started_wall = time.monotonic(), time.time()
        self.agent = subprocess.Popen(argv, cwd=REPO_ROOT, env=box.ovs_env, stdout=log, stderr=subprocess.STDOUT)
        if host:
            self.start_host()
        return self.box_started_at

    def start_host(self) -> None:
        """busybox udhcpc with Debian's stock script on the host, in the foreground (it keeps
        its lease), asking every second; /etc/resolv.conf is a file of the run directory in a
        private mount namespace."""
        resolv = os.path.join(self.run_dir, "bbh1-resolv.conf")
        open(resolv, "w").close()
        client = (f"mount --bind {resolv} /etc/resolv.conf && exec udhcpc -i {HOST_INTF} -f -t 3 -T 1 -A 1 "
                  f"-s /etc/udhcpc/default.script")
        self.host_dhcp = subprocess.Popen(
            ["mnexec", "-a", str(self[HOST].pid), "unshare", "--mount", "--propagation", "private", "sh", "-c", client],
            stdout=open(os.path.join(self.run_dir, "bbh1-udhcpc.log"), "w"), stderr=subprocess.STDOUT)

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

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """The controller's REST API (operator token), from the MSP's namespace; None when it
        does not answer with JSON."""
        argv = ["curl", "-sS", "-m", "3", "-X", method, "-H", f"Authorization: Bearer {self.token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        out = run([*argv, f"http://{REST}/api/v1{path}"], self[MSP], check=False, timeout=5)
        try:
            return json.loads(out)
        except ValueError:
            return None

    def paths_live(self) -> dict[str, bool]:
        """The controller's view of each ISP's path: live at both ends (REST)."""
        view = self.rest("GET", "/homenets/home1") or {}
        return {p["isp"]: bool(p["live"]) for p in view.get("paths", []) if p.get("edge") == "edge1"}

    def multihomed(self) -> bool:
        return all(self.box_tunnels_up().values()) and all(self.paths_live().get(isp, False) for isp in ISPS)

    def wait_multihomed(self, timeout: float) -> float:
        """Both ISPs' tunnels up: BFD at the box, and live at both ends for the controller."""
        wait_for(self.multihomed, timeout, interval=0.02, what="both ISPs' tunnels up (BFD, and live at both ends)")
        return time.monotonic()

    def host_address(self) -> str | None:
        out = run(["ip", "-4", "-o", "addr", "show", "dev", HOST_INTF, "scope", "global"], self[HOST], check=False)
        match = re.search(r"inet (\S+)", out)
        return match.group(1) if match else None

    def host_configured(self) -> bool:
        """The lease is applied: udhcpc's script sets the address first and the default route
        after it, and a ping in between fails at once with "Network is unreachable"."""
        if self.host_address() is None:
            return False
        return "default" in run(["ip", "-4", "route", "show", "default"], self[HOST], check=False)

    def wait_host_reaches_server(self, timeout: float) -> float:
        """Wait for the host's DHCP lease, then ping the server every 20 ms until it answers;
        returns the answer's arrival as time.monotonic() (from ping's own timestamp)."""
        deadline = time.monotonic() + timeout
        wait_for(self.host_configured, timeout, interval=0.02, what="the host's DHCP lease and default route")
        left = max(1, int(deadline - time.monotonic()) + 1)
        ping = subprocess.Popen(["mnexec", "-a", str(self[HOST].pid), "ping", "-n", "-D", "-i", "0.02",
                                 "-w", str(left), "-c", "1", SERVER_IP], stdout=subprocess.PIPE, text=True)
        try:
            out, _ = ping.communicate(timeout=left + 5)
        finally:
            _end(ping)
        match = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.MULTILINE)
        if match is None:
            raise TimeoutError(f"the host's pings to the server went unanswered for {left} s:\n{out}")
        return time.monotonic() - (time.time() - float(match.group(1)))

    def manager_connected(self) -> bool:
        try:
            return self[BOX].vsctl("get", "manager", ".", "is_connected", timeout=2).strip() == "true"
        except Exception:
            return False

    def agent_status(self) -> dict:
        try:
            with open(os.path.join(self.run_dir, "agent", "status.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def lease(self, isp: str) -> str:
        """The lease the box's OVSDB holds for this ISP ("" if none)."""
        return self[BOX].vsctl("--if-exists", "get", "open_vswitch", ".", f"external_ids:msp-lease-br-{isp}",
                               timeout=2)

    def lease6(self, isp: str) -> str:
        """The IPv6 address the box took on this ISP by SLAAC, as its OVSDB records it ("" if none)."""
        out = self[BOX].vsctl("--if-exists", "get", "open_vswitch", ".", f"external_ids:msp-lease6-br-{isp}",
                              timeout=2)
        return out.strip().strip('"')

    def edge_address(self, isp: str) -> str | None:
        """Where the edge's flows expect this ISP's tunnel of home1 to come from (the
        address the controller was told), or None when it has no flow for it."""
        port = edge_slot_port(self.homenet.uplink(isp).slot)
        try:
            number = self[EDGE].vsctl("get", "interface", port, "ofport", timeout=2).strip()
            out = self[EDGE].ofctl("dump-flows", "br-msp")
        except Exception:
            return None
        for line in out.splitlines():
            match = re.search(r"tun_src=([\d.]+)", line)
            if match and re.search(r"tun_id=0x1\b", line) and \
                    re.search(rf"in_port=(\"?{port}\"?|{number})[, ]", line):
                return match.group(1)
        return None

    # -- probes: numbered packets into one ISP's tunnel, counted at the server

    def start_probes(self, rate: int = 500) -> None:
        """A probe into each ISP's tunnel (rate packets/s each), and the server's sink."""
        sink_file = os.path.join(self.run_dir, "probes.txt")
        open(sink_file, "w").close()
        self.sink = subprocess.Popen(["mnexec", "-a", str(self[SERVER].pid), sys.executable, "-c", PROBE_SINK,
                                      sink_file, *map(str, PROBE_PORTS.values())])
        wait_for(lambda: all(f":{p}" in run(["ss", "-Hlun"], self[SERVER], check=False)
                             for p in PROBE_PORTS.values()), 10, what="the probe sink")
        for isp, port in PROBE_PORTS.items():
            edge_ip = str(self.config.edge("edge1").tunnel_ip(self.homenet.uplink(isp).slot))
            self.probes[isp] = subprocess.Popen(
                ["mnexec", "-a", str(self[BOX].pid), sys.executable, "-c", PROBE_SENDER, f"br-{isp}", edge_ip,
                 str(self.homenet.id), PROBE_SOURCE, SERVER_IP, str(port), str(rate)])

    def stop_probes(self) -> None:
        for proc in self.probes.values():
            _end(proc)
        self.probes = {}

    def probe_arrivals(self, isp: str) -> list[tuple[int, float]]:
        """(sequence number, arrival time.time()) of each probe packet of this ISP the server got."""
        port, found = str(PROBE_PORTS[isp]), []
        with open(os.path.join(self.run_dir, "probes.txt")) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and parts[0] == port:
                    found.append((int(parts[1]), float(parts[2])))
        return found

    # -- events

    def renew(self, isp: str) -> None:
        """Make the box's DHCP client renew its lease on this ISP now (SIGUSR1 to udhcpc)."""
        pid_file = os.path.join(self.run_dir, "agent", f"udhcpc-br-{isp}.pid")
        with open(pid_file) as handle:
            os.kill(int(handle.read().strip()), signal.SIGUSR1)

    def isp_blackhole(self, isp: str, on: bool = True) -> None:
        """ISP drops everything it would forward (nftables in its namespace)."""
        node = self[isp_node(isp)]
        if on:
            run(["nft", "-f", "-"], node, input="table inet bbcut {\n chain cut {\n"
                "  type filter hook forward priority 0; policy drop;\n }\n}\n")
        else:
            run(["nft", "delete", "table", "inet", "bbcut"], node)


def _end(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


__all__ = ["BlankBoxNetwork", "BlankBoxTopo"]
