"""Two Open vSwitch instances for the edge-scale benchmark: many homes' MSPMB bridges in one
(cheap stand-ins for N home boxes) and one MSP edge in the other, joined by one veth:

    namespace msp-es-homes                        namespace msp-es-edge
    br-up 198.18.0.10+i, 198.18.128.10+i          br-up 198.18.0.1, 198.18.128.1
    homes: h<i>-a, h<i>-b vxlan ports, BFD  <---> br-msp: the edge's tunnel ports (by design)

Each home has its own address per ISP, as real homes do, so one home's path can be cut
alone (a drop flow on the edge's underlay bridge). Daemons run as our children and are
stopped by PID; the namespaces (and the veth with them) are removed by name.
"""
from __future__ import annotations

import ipaddress
import os
import pathlib
import subprocess
import time
from collections.abc import Iterable

from topologies.ovsbox import OVS_NICE, OVS_SCHEMA, ensure_socket_buffers, wait_for

from .scale_ovs import stop_processes

HOMES_NS, EDGE_NS = "msp-es-homes", "msp-es-edge"
HOMES_VETH, EDGE_VETH = "msp-es-h", "msp-es-e"
# Per ISP slot: the edge's tunnel address, and the block the homes' addresses come from.
EDGE_ADDRESSES = ("198.18.0.1", "198.18.128.1")
HOME_BLOCKS = (ipaddress.ip_network("198.18.0.0/17"), ipaddress.ip_network("198.18.128.0/17"))
FIRST_HOME = 10
PORTS_PER_TRANSACTION = 200


def home_address(slot: int, index: int) -> str:
    return str(HOME_BLOCKS[slot].network_address + FIRST_HOME + index)


class OvsInstance:
    """ovsdb-server + ovs-vswitchd (userspace datapath) in a namespace of their own."""

    def __init__(self, namespace: str, run_dir: pathlib.Path) -> None:
        self.namespace, self.dir = namespace, run_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "OVS_RUNDIR": str(run_dir), "OVS_DBDIR": str(run_dir), "OVS_LOGDIR": str(run_dir)}

    def start(self) -> None:
        if os.path.exists(f"/run/netns/{self.namespace}"):
            raise RuntimeError(f"namespace {self.namespace} exists (left by an earlier run?): "
                               f"`ip netns pids {self.namespace}`, then `ip netns del {self.namespace}`")
        run("ip", "netns", "add", self.namespace)
        self.ns("ip", "link", "set", "lo", "up")
        self.dir.mkdir(parents=True, exist_ok=True)
        run("ovsdb-tool", "create", str(self.dir / "conf.db"), OVS_SCHEMA)
        self._spawn("ovsdb-server", str(self.dir / "conf.db"), f"--remote=punix:{self.db_socket}")
        wait_for(lambda: os.path.exists(self.db_socket) or self.died(), 20, what="ovsdb-server's socket")
        self.vsctl("init", wait=False)
        self.vsctl("set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true", wait=False)
        ensure_socket_buffers()
        self._spawn("ovs-vswitchd", f"unix:{self.db_socket}")
        self.vsctl("show")
        if self.died():
            raise RuntimeError(f"OVS did not stay up in {self.namespace}; see the logs in {self.dir}")

    def stop(self) -> None:
        """ovs-vswitchd, then ovsdb-server, by PID; then the namespace (and its veth), by name."""
        stop_processes(self.processes)
        if os.path.exists(f"/run/netns/{self.namespace}"):
            run("ip", "netns", "del", self.namespace)

    @property
    def db_socket(self) -> str:
        return str(self.dir / "db.sock")

    @property
    def vswitchd_pid(self) -> int:
        return self.processes[-1].pid

    def died(self) -> bool:
        return any(process.poll() is not None for process in self.processes)

    def _spawn(self, daemon: str, *args: str) -> None:
        argv = ["ip", "netns", "exec", self.namespace, "nice", "-n", str(OVS_NICE), daemon, *args,
                f"--pidfile={self.dir / daemon}.pid", f"--log-file={self.dir / daemon}.log",
                "--no-chdir", "-vconsole:off"]
        self.processes.append(subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def ns(self, *argv: str, input: str | None = None) -> str:
        return run("ip", "netns", "exec", self.namespace, *argv, input=input)

    def vsctl(self, *args: str, wait: bool = True, timeout: int = 300) -> str:
        argv = ["ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={timeout}"]
        return run(*argv, *([] if wait else ["--no-wait"]), *args, env=self.env, timeout=timeout + 10)

    def ofctl(self, *args: str) -> str:
        return run("ovs-ofctl", "-O", "OpenFlow13", *args, env=self.env)

    def add_flows(self, bridge: str, flows: Iterable[str]) -> None:
        run("ovs-ofctl", "-O", "OpenFlow13", "add-flows", f"unix:{self.dir / bridge}.mgmt", "-",
            env=self.env, input="\n".join(flows) + "\n")

    def appctl(self, *args: str) -> str:
        return run("ovs-appctl", "-t", str(self.dir / f"ovs-vswitchd.{self.vswitchd_pid}.ctl"), *args,
                   env=self.env)

    def transact(self, commands: list[list[str]]) -> None:
        """ovs-vsctl commands, PORTS_PER_TRANSACTION at a time (one transaction each)."""
        for first in range(0, len(commands), PORTS_PER_TRANSACTION):
            args: list[str] = []
            for command in commands[first:first + PORTS_PER_TRANSACTION]:
                args += ["--", *command]
            self.vsctl(*args)

    def underlay(self, veth: str, addresses: Iterable[str], prefixlen: int) -> None:
        """The PLATFORM recipe: a netdev bridge with the veth as its port, the addresses on
        the bridge's internal port, the veth's own ARP off."""
        self.vsctl("add-br", "br-up", "--", "set", "bridge", "br-up", "datapath_type=netdev")
        self.vsctl("add-port", "br-up", veth)
        self.ns("ip", "link", "set", veth, "arp", "off", "up")
        self.ns("ip", "link", "set", "br-up", "up")
        script = "".join(f"address add {a}/{prefixlen} dev br-up\n" for a in addresses)
        run("ip", "-n", self.namespace, "-batch", "-", input=script)


def link(homes: OvsInstance, edge: OvsInstance) -> None:
    run("ip", "link", "add", HOMES_VETH, "netns", homes.namespace, "type", "veth",
        "peer", "name", EDGE_VETH, "netns", edge.namespace)


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    start, begun = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait on a condition
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - begun)


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(*argv: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''}` failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
