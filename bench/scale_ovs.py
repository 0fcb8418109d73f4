"""One Open vSwitch instance (userspace datapath) holding many bridges, in a network namespace
of its own, with a management link into the controller's namespace:

    namespace msp-scale                         namespace msp-ctl
    ovsdb-server + ovs-vswitchd                 msp-mgmt (bridge) 198.19.0.1 <- ryu-manager
    bridges sb1..sbN --- mgmt0 198.19.0.250 <--veth--> m-scale

The daemons run in the foreground as our children (no --detach), so they are stopped and
reaped by PID; the namespace and the veth are removed by name.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Sequence

from topologies import control_ns
from topologies.ovsbox import OVS_SCHEMA, wait_for

NAMESPACE = "msp-scale"
ROOT_VETH, BOX_VETH = "m-scale", "mgmt0"  # root_veth lives in msp-ctl, on its management bridge
BOX_ADDRESS = "198.19.0.250/24"
BRIDGES_PER_TRANSACTION = 50


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop our daemons newest first (ovs-vswitchd before its database), by PID."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    processes.clear()


class OvsNamespace:
    def __init__(self, run_dir: pathlib.Path) -> None:
        self.dir = run_dir
        self.processes: list[subprocess.Popen[bytes]] = []  # ovsdb-server, then ovs-vswitchd
        self.created = self.linked = False  # stop() removes only what start() made
        self.env = {**os.environ, "OVS_RUNDIR": str(run_dir), "OVS_DBDIR": str(run_dir),
                    "OVS_LOGDIR": str(run_dir)}

    # -- life cycle

    def start(self) -> None:
        if os.path.exists(f"/run/netns/{NAMESPACE}"):
            raise RuntimeError(f"namespace {NAMESPACE} exists (left by an earlier run?): "
                               f"check `ip netns pids {NAMESPACE}`, then `ip netns del {NAMESPACE}`")
        _run("ip", "netns", "add", NAMESPACE)
        self.created = True
        self._in_ns("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        self._in_ns("ip", "link", "set", "lo", "up")
        self._add_mgmt_link()
        self.dir.mkdir(parents=True, exist_ok=True)
        _run("ovsdb-tool", "create", str(self.dir / "conf.db"), OVS_SCHEMA)
        self._spawn("ovsdb-server", str(self.dir / "conf.db"), f"--remote=punix:{self.db_socket}")
        wait_for(lambda: os.path.exists(self.db_socket) or self._died(), 20, what="ovsdb-server's socket")
        self.vsctl("init", wait=False)
        self._spawn("ovs-vswitchd", f"unix:{self.db_socket}")
        self.vsctl("show")  # waits for ovs-vswitchd to have read the database
        if self._died():
            raise RuntimeError(f"OVS did not stay up; see the logs in {self.dir}")

    def stop(self) -> None:
        """ovs-vswitchd, then ovsdb-server, by PID; then the veth and namespace, by name."""
        stop_processes(self.processes)
        if self.linked:
            control_ns.delete_link(ROOT_VETH)
            self.linked = False
        if self.created:
            _run("ip", "netns", "del", NAMESPACE)
            self.created = False

    def __enter__(self) -> OvsNamespace:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add_mgmt_link(self) -> None:
        if control_ns.link_exists(ROOT_VETH, control_ns.NAMESPACE):
            raise RuntimeError(f"{ROOT_VETH} exists in namespace {control_ns.NAMESPACE} (left by an earlier run?)")
        ns = ("-n", control_ns.NAMESPACE)
        _run("ip", *ns, "link", "add", ROOT_VETH, "type", "veth", "peer", "name", BOX_VETH, "netns", NAMESPACE)
        self.linked = True
        _run("ip", *ns, "link", "set", ROOT_VETH, "master", control_ns.MGMT_BRIDGE, "up")
        self._in_ns("ip", "addr", "add", BOX_ADDRESS, "dev", BOX_VETH)
        self._in_ns("ip", "link", "set", BOX_VETH, "up")

    def _spawn(self, daemon: str, *args: str) -> None:
        argv = ["ip", "netns", "exec", NAMESPACE, daemon, *args, f"--pidfile={self.dir / daemon}.pid",
                f"--log-file={self.dir / daemon}.log", "--no-chdir", "-vconsole:off"]
        self.processes.append(subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _died(self) -> bool:
        return any(process.poll() is not None for process in self.processes)

    def _in_ns(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", NAMESPACE, *argv)

    # -- OVS commands

    @property
    def db_socket(self) -> str:
        return str(self.dir / "db.sock")

    def vsctl(self, *args: str, wait: bool = True, timeout: int = 120) -> str:
        argv = ["ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={timeout}"]
        return _run(*argv, *([] if wait else ["--no-wait"]), *args, env=self.env, timeout=timeout + 10)

    def add_bridges(self, bridges: Sequence[tuple[str, int]], controller: str) -> None:
        """Bridges (name, datapath id): netdev, secure, OpenFlow 1.3, and a controller that
        is retried every second at most (the default backoff grows to 8 s, which would
        blur the time from the controller's start to the switches' connections)."""
        for first in range(0, len(bridges), BRIDGES_PER_TRANSACTION):
            args: list[str] = []
            for index, (name, dpid) in enumerate(bridges[first:first + BRIDGES_PER_TRANSACTION]):
                ref = f"@c{index}"
                args += ["--", "add-br", name,
                         "--", "set", "Bridge", name, "datapath_type=netdev", "fail_mode=secure",
                         "protocols=OpenFlow13", f"other_config:datapath-id={dpid:016x}",
                         "other_config:disable-in-band=true", f"controller={ref}",
                         "--", f"--id={ref}", "create", "Controller", f'target="{controller}"', "max_backoff=1000"]
            self.vsctl(*args)

    def reconnect(self, bridge: str, controller: str) -> None:
        """Drop the bridge's connection and connect again. Two transactions: OVS keeps a
        connection whose target did not change, even in a fresh Controller record."""
        self.vsctl("del-controller", bridge)
        self.vsctl("--", "--id=@c", "create", "Controller", f'target="{controller}"', "max_backoff=1000",
                   "--", "set", "Bridge", bridge, "controller=@c")

    def flow_count(self, bridge: str) -> int:
        out = _run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", f"unix:{self.dir / bridge}.mgmt", env=self.env)
        return sum(1 for line in out.splitlines() if "cookie=" in line)


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''}` failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
