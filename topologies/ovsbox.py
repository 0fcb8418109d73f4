"""A Mininet node that runs its own Open vSwitch inside its network namespace.

Open vSwitch's tunnel routing mirrors the kernel routes of the namespace that ovs-vswitchd
runs in, so every box of the reference network (the MSPMB, each edge) runs a private
``ovsdb-server`` + ``ovs-vswitchd`` (userspace datapath) in its own namespace, with its own
directory for the database, sockets, pidfiles and logs::

    <run_dir>/<box>/conf.db                   the box's OVSDB
    <run_dir>/<box>/db.sock                   OVSDB socket (ovs-vsctl --db=unix:...)
    <run_dir>/<box>/<bridge>.mgmt             OpenFlow management socket per bridge
    <run_dir>/<box>/ovsdb-server.pid          pidfiles: stop_ovs() kills exactly these
    <run_dir>/<box>/ovs-vswitchd.pid
    <run_dir>/<box>/ovs-vswitchd.<pid>.ctl    unixctl socket (ovs-appctl -t ...)
    <run_dir>/<box>/ovsdb-server.<pid>.ctl
    <run_dir>/<box>/*.log

By hand, from the root namespace (the sockets live on the shared filesystem)::

    OVS_RUNDIR=/run/msp/mspmb ovs-vsctl show
    OVS_RUNDIR=/run/msp/mspmb ovs-ofctl -O OpenFlow13 dump-flows br-home
    ovs-ofctl -O OpenFlow13 dump-flows unix:/run/msp/mspmb/br-home.mgmt
    OVS_RUNDIR=/run/msp/mspmb ovs-appctl bfd/show
    nsenter -t "$(cat /run/msp/mspmb/ovs-vswitchd.pid)" -n ip route

The node's own shell exports OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR, so in the Mininet CLI
``mspmb ovs-vsctl show`` works as is.

The helpers here raise CommandError (with the command's stderr) on any failure.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from mininet.node import Host

from . import control_ns

LOG = logging.getLogger("msp.ovsbox")
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DEFAULT_RUN_DIR = "/run/msp"
# Order matters: stop the switch before its database.
OVS_DAEMONS = ("ovs-vswitchd", "ovsdb-server")
# The niceness Open vSwitch's own service script (ovs-ctl) gives both daemons: the switch
# before the emulated hosts' bulk transfers on the same two cores.
OVS_NICE = -10
# The userspace datapath reads each port through an AF_PACKET socket whose receive buffer is
# net.core.rmem_default (208 KiB: about 1 ms at full rate). When the box's threads wait a few
# ms for a CPU, that buffer overflows and BFD packets are dropped with the bulk: tunnels flap
# under a saturating load. 4 MiB absorbs those waits (measured: 0 drops, 0 flaps).
OVS_RX_BUFFER_BYTES = 4 << 20
# It sends every port's packets through one more AF_PACKET socket, and a packet waiting in a
# port's qdisc (the MSP's shapers: every homenet's queues on an edge's port) still counts
# against that socket's send buffer, net.core.wmem_default (208 KiB, about 90 frames). Once
# the shapers hold that much, every send fails and OVS drops the packet whatever its class:
# voice was lost in 3 runs of 3 at the edge under bench-qos's load, 0 of 3 with 16 MiB.
OVS_TX_BUFFER_BYTES = 16 << 20
# These sysctls are not per namespace on this kernel, so they are raised machine-wide, never lowered.
SOCKET_BUFFER_DEFAULTS = {"/proc/sys/net/core/rmem_default": OVS_RX_BUFFER_BYTES,
                          "/proc/sys/net/core/wmem_default": OVS_TX_BUFFER_BYTES}

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class CommandError(RuntimeError):
    """A command failed; the message names where it ran, the command and its stderr."""

    def __init__(self, where: str, argv: Sequence[str], returncode: int | None,
                 stderr: str, stdout: str = "") -> None:
        self.where = where
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        status = "timed out" if returncode is None else f"failed (exit {returncode})"
        detail = (stderr or stdout).strip() or "(no output)"
        super().__init__(f"{where}: `{shlex.join(self.argv)}` {status}: {detail}")


def ensure_socket_buffers(minimums: Mapping[str, int] = SOCKET_BUFFER_DEFAULTS) -> None:
    """Give sockets created from now on (ovs-vswitchd's port sockets) at least these default
    buffers (sysctl file: bytes)."""
    for path, minimum in minimums.items():
        with open(path) as file:
            current = int(file.read())
        if current < minimum:
            LOG.info("raising %s from %d to %d for the userspace datapath", path, current, minimum)
            with open(path, "w") as file:
                file.write(str(minimum))


def run(argv: Sequence[str], node: Host | None = None, *, env: Mapping[str, str] | None = None,
        input: str | None = None, timeout: float = 60.0, check: bool = True,
        where: str | None = None) -> str:
    """Run argv in node's network namespace (the root namespace if node is None).

    Returns stdout; raises CommandError on a non-zero exit or a timeout when check is set.
    """
    argv = [str(a) for a in argv]
    full = argv if node is None else ["mnexec", "-a", str(node.pid), *argv]
    where = where or ("root namespace" if node is None else node.name)
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, check=False,
                              env=dict(env) if env is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise CommandError(where, argv, None, _text(err.stderr), _text(err.stdout)) from None
    except OSError as err:
        raise CommandError(where, argv, 127, str(err)) from None
    if check and proc.returncode != 0:
        raise CommandError(where, argv, proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.05,
             what: str = "condition") -> object:
    """Poll condition() until it returns something truthy; TimeoutError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- processes by pidfile -------------------------------------------------------------


def read_pidfile(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int, comm: str | None = None) -> bool:
    """True if pid runs (not a zombie) and, when comm is given, is that program."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return False
    # /proc/PID/stat: "pid (comm) state ..."; comm may contain spaces or parentheses.
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 2:].split()[0]
    if state in ("Z", "X"):
        return False
    return comm is None or name == comm[:15]


def _reap(pid: int) -> bool:
    """Reap pid if it is our child and has exited; True once it is gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours: gone once it is not running (or a zombie)
        return not process_alive(pid)
    # Ours: only waitpid tells. (A multi-threaded daemon's leader shows "Z" while its
    # other threads still exit; it cannot be reaped yet.)
    return done == pid


def kill_pid(pid: int, comm: str, timeout: float = 5.0) -> None:
    """SIGTERM pid (only if it is still the program comm), SIGKILL it after timeout s."""
    if not process_alive(pid, comm):
        _reap(pid)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: _reap(pid), wait, what=f"{comm} (pid {pid}) to exit")
            return
        except TimeoutError:
            continue
    raise RuntimeError(f"{comm} (pid {pid}) survived SIGKILL")


class _Subreaper:
    """Become a child subreaper while daemons detach, so that we can reap them later.

    A daemon started with --detach is orphaned when its launcher exits. Without this it
    is adopted by PID 1, which on some VMs and containers never reaps, leaving a zombie
    after stop. The flag is restored afterwards; the daemons stay our children.
    """

    def __enter__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        self.ok = self.libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0
        self.previous = value.value
        if self.ok:
            self.libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def __exit__(self, *exc: object) -> None:
        if self.ok:
            self.libc.prctl(_PR_SET_CHILD_SUBREAPER, self.previous, 0, 0, 0)


# --- links ----------------------------------------------------------------------------


def link_exists(name: str, node: Host | None = None) -> bool:
    return bool(run(["ip", "-o", "link", "show", "dev", name], node, check=False).strip())


# --- the node ---------------------------------------------------------------------------


class OvsBox(Host):
    """A Mininet host running its own ovsdb-server + ovs-vswitchd (userspace datapath).

    Parameters (besides Host's):
      run_dir: base directory; this box's OVS files go to <run_dir>/<name>/
      ovs_dir: explicit directory for this box's OVS files (overrides run_dir)
      mgmt: optional dict(bridge=, bridge_ip=, ip=, root_intf=, box_intf=): a veth from a
            bridge in the controller's namespace into the box (the controller's management network)
      ovs_other_config: extra Open_vSwitch other_config set before ovs-vswitchd starts

    config() (called by Mininet once the links exist) adds the management link, starts OVS
    and calls provision(), which subclasses override. terminate() undoes all of it.
    """

    def __init__(self, name: str, run_dir: str = DEFAULT_RUN_DIR, ovs_dir: str | None = None,
                 **params: object) -> None:
        self.ovs_dir = os.path.abspath(ovs_dir or os.path.join(run_dir, name))
        self.mgmt: dict[str, str] | None = None
        self.ovs_user_routes: list[tuple[str, ...]] = []
        super().__init__(name, **params)
        # Let `mspmb ovs-vsctl show` & co. in the Mininet CLI find this box's OVS.
        self.cmd("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in self._ovs_vars().items()))

    # -- Mininet hooks

    def config(self, mgmt: Mapping[str, str] | None = None,
               ovs_other_config: Mapping[str, str] | None = None, **params: object) -> dict:
        result = super().config(**params)
        if mgmt:
            self.add_mgmt_link(**mgmt)
        self.start_ovs(ovs_other_config)
        self.provision()
        return result

    def provision(self) -> None:
        """Bridges, ports and addresses of the box: override in subclasses."""

    def terminate(self) -> None:
        try:
            self.stop_ovs()
        finally:
            try:
                self.del_mgmt_link()
            finally:
                super().terminate()

    # -- commands

    def _ovs_vars(self) -> dict[str, str]:
        return {"OVS_RUNDIR": self.ovs_dir, "OVS_DBDIR": self.ovs_dir, "OVS_LOGDIR": self.ovs_dir}

    @property
    def ovs_env(self) -> dict[str, str]:
        """Environment that points the OVS tools at this box's daemons."""
        return {**os.environ, **self._ovs_vars()}

    @property
    def db_socket(self) -> str:
        return os.path.join(self.ovs_dir, "db.sock")

    def mgmt_socket(self, bridge: str) -> str:
        """OpenFlow target of one bridge of this box, for ovs-ofctl or a controller test."""
        return f"unix:{os.path.join(self.ovs_dir, bridge)}.mgmt"

    def pidfile(self, daemon: str) -> str:
        return os.path.join(self.ovs_dir, f"{daemon}.pid")

    def ovs_pids(self) -> dict[str, int]:
        """The live OVS daemons of this box, by program name."""
        pids = {}
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(self.pidfile(daemon))
            if pid is not None and process_alive(pid, daemon):
                pids[daemon] = pid
        return pids

    def run(self, *argv: str, input: str | None = None, timeout: float = 60.0) -> str:
        """Run a command in this box's namespace; CommandError on failure."""
        return run(argv, self, input=input, timeout=timeout)

    def vsctl(self, *args: str, wait: bool = True, timeout: int = 30) -> str:
        """ovs-vsctl against this box's OVSDB. wait=False adds --no-wait."""
        argv = ["ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={timeout}"]
        if not wait:
            argv.append("--no-wait")
        return run([*argv, *args], env=self.ovs_env, timeout=timeout + 5, where=self.name)

    def ofctl(self, command: str, bridge: str | None = None, *args: str) -> str:
        """ovs-ofctl -O OpenFlow13 COMMAND BRIDGE ARGS... against this box's vswitchd.

        A bare bridge name becomes unix:<ovs_dir>/<bridge>.mgmt.
        """
        argv = ["ovs-ofctl", "-O", "OpenFlow13", command]
        if bridge is not None:
            argv.append(bridge if ":" in bridge else self.mgmt_socket(bridge))
        return run([*argv, *args], env=self.ovs_env, where=self.name)

    def appctl(self, *args: str, target: str = "ovs-vswitchd") -> str:
        """ovs-appctl against this box's ovs-vswitchd (or target: ovsdb-server)."""
        pid = self.ovs_pids().get(target)
        if pid is None:
            raise RuntimeError(f"{self.name}: {target} is not running (no live {self.pidfile(target)})")
        ctl = os.path.join(self.ovs_dir, f"{target}.{pid}.ctl")
        return run(["ovs-appctl", "-t", ctl, *args], env=self.ovs_env, where=self.name)

    # -- daemons

    def start_ovs(self, other_config: Mapping[str, str] | None = None) -> None:
        """Create a fresh database and start ovsdb-server and ovs-vswitchd in the namespace.

        Does nothing if both daemons already run. userspace-tso-enable is set before
        ovs-vswitchd starts (TCP through netdev bridges fails without it).
        """
        live = self.ovs_pids()
        if set(live) == set(OVS_DAEMONS):
            return
        if live:  # half running: start again from scratch
            self.stop_ovs()
        shutil.rmtree(self.ovs_dir, ignore_errors=True)
        os.makedirs(self.ovs_dir, mode=0o755)
        d = self.ovs_dir
        db = os.path.join(d, "conf.db")
        run(["ovsdb-tool", "create", db, OVS_SCHEMA], where=self.name)
        with _Subreaper():
            run(["nice", "-n", str(OVS_NICE), "ovsdb-server", db,
                 f"--remote=punix:{self.db_socket}",
                 "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                 f"--pidfile={self.pidfile('ovsdb-server')}",
                 f"--log-file={os.path.join(d, 'ovsdb-server.log')}",
                 "--detach", "--no-chdir"], self, env=self.ovs_env)
        settings = {"userspace-tso-enable": "true", **(other_config or {})}
        self.vsctl("init", wait=False)
        self.vsctl("set", "Open_vSwitch", ".",
                   *[f"other_config:{k}={v}" for k, v in settings.items()], wait=False)
        self._spawn_vswitchd()
        missing = set(OVS_DAEMONS) - set(self.ovs_pids())
        if missing:
            raise RuntimeError(f"{self.name}: {', '.join(sorted(missing))} did not stay up; "
                               f"see the logs in {d}")

    def _spawn_vswitchd(self) -> None:
        ensure_socket_buffers()
        with _Subreaper():
            run(["nice", "-n", str(OVS_NICE), "ovs-vswitchd", f"unix:{self.db_socket}",
                 f"--pidfile={self.pidfile('ovs-vswitchd')}",
                 f"--log-file={os.path.join(self.ovs_dir, 'ovs-vswitchd.log')}",
                 "--detach", "--no-chdir"], self, env=self.ovs_env)

    def stop_ovs(self, remove_dir: bool = True) -> None:
        """Kill this box's ovs-vswitchd, then its ovsdb-server (by pidfile); idempotent."""
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(self.pidfile(daemon))
            if pid is not None:
                kill_pid(pid, daemon)
        if remove_dir:
            shutil.rmtree(self.ovs_dir, ignore_errors=True)

    # -- ovs-vswitchd alone (a box that fails and comes back with its configuration)

    def stop_vswitchd(self) -> None:
        """Kill only ovs-vswitchd (by pidfile, reaped): the box's switches and tunnels die,
        its controller connections drop; ovsdb-server and the database stay. Idempotent."""
        pid = read_pidfile(self.pidfile("ovs-vswitchd"))
        if pid is not None:
            kill_pid(pid, "ovs-vswitchd")

    def start_vswitchd(self, timeout: float = 20.0) -> None:
        """Start ovs-vswitchd again on the same database (same bridges, ports, controllers),
        wait until every bridge's internal port exists again, then restore what lived only
        in ovs-vswitchd or on its internal ports: see restore_after_vswitchd()."""
        if "ovsdb-server" not in self.ovs_pids():
            raise RuntimeError(f"{self.name}: ovsdb-server is not running; use start_ovs()")
        if "ovs-vswitchd" not in self.ovs_pids():
            self._spawn_vswitchd()
        if "ovs-vswitchd" not in self.ovs_pids():
            raise RuntimeError(f"{self.name}: ovs-vswitchd did not stay up; see {self.ovs_dir}/ovs-vswitchd.log")
        bridges = self.vsctl("list-br").split()
        wait_for(lambda: all(link_exists(b, self) for b in bridges), timeout,
                 what=f"{self.name}'s bridges {bridges} to come back")
        self.restore_after_vswitchd()

    def restore_after_vswitchd(self) -> None:
        """Re-apply what an ovs-vswitchd restart loses: kernel state of the bridges'
        internal ports (subclasses) and the user routes added with add_ovs_route()."""
        for route in self.ovs_user_routes:
            self.appctl("ovs/route/add", *route)

    def add_ovs_route(self, *args: str) -> None:
        """`ovs-appctl ovs/route/add ARGS...`, remembered so that start_vswitchd() adds it again."""
        self.appctl("ovs/route/add", *args)
        self.ovs_user_routes.append(tuple(args))

    # -- management link

    def add_mgmt_link(self, bridge: str, ip: str, bridge_ip: str | None = None,
                      root_intf: str | None = None, box_intf: str = "mgmt0") -> None:
        """veth root_intf (controller namespace, on bridge `bridge`) <-> box_intf (here, ip)."""
        self.mgmt = add_mgmt_link(self, bridge, ip, bridge_ip, root_intf, box_intf)

    def del_mgmt_link(self) -> None:
        """Delete the management veth; delete the bridge too once no port is left."""
        del_mgmt_link(self.mgmt)
        self.mgmt = None


def add_mgmt_link(node: Host, bridge: str, ip: str, bridge_ip: str | None = None,
                  root_intf: str | None = None, node_intf: str = "mgmt0") -> dict[str, str]:
    """veth root_intf (in the controller's namespace, on bridge `bridge`) <-> node_intf (in node, ip).

    The management bridge lives in the controller's own namespace (topologies/control_ns.py),
    never in the root namespace. Returns what del_mgmt_link() needs to undo it."""
    root_intf = root_intf or f"m-{node.name}"
    if bridge_ip:
        control_ns.ensure(bridge_ip.split("/")[0])
    if control_ns.link_exists(root_intf, control_ns.NAMESPACE):
        raise RuntimeError(f"{node.name}: {root_intf} already exists in namespace {control_ns.NAMESPACE} "
                           "(left over from an earlier run?)")
    ns = ["-n", control_ns.NAMESPACE]
    run(["ip", *ns, "link", "add", root_intf, "type", "veth", "peer", "name", node_intf,
         "netns", str(node.pid)])
    run(["ip", *ns, "link", "set", root_intf, "master", bridge, "up"])
    run(["ip", "-batch", "-"], node, input=f"addr replace {ip} dev {node_intf}\n"
                                           f"link set {node_intf} up\n")
    return {"bridge": bridge, "root_intf": root_intf, "box_intf": node_intf}


def del_mgmt_link(mgmt: Mapping[str, str] | None) -> None:
    """Undo add_mgmt_link(): the veth (the namespace and its bridge belong to whoever made them)."""
    if not mgmt:
        return
    control_ns.delete_link(mgmt["root_intf"])


def prepare_ovs_ports(node: Host, ports: Iterable[str], mtu: Mapping[str, int] | None = None) -> None:
    """Make veths fit to be OVS ports: no ARP and no IPv6 from the kernel, MTU, up.

    The kernel otherwise answers ARP on an OVS-attached veth with the veth's own MAC,
    which misdirects tunnel traffic.
    """
    ports = list(ports)
    if not ports:
        return
    run(["sysctl", "-qw", *[f"net.ipv6.conf.{p}.disable_ipv6=1" for p in ports]], node)
    lines = []
    for port in ports:
        if mtu and port in mtu:
            lines.append(f"link set {port} mtu {mtu[port]}")
        lines += [f"link set {port} arp off", f"link set {port} up",
                  f"neigh flush dev {port}"]
    run(["ip", "-batch", "-"], node, input="\n".join(lines) + "\n")


__all__ = [
    "DEFAULT_RUN_DIR",
    "OVS_DAEMONS",
    "CommandError",
    "OvsBox",
    "add_mgmt_link",
    "del_mgmt_link",
    "kill_pid",
    "link_exists",
    "prepare_ovs_ports",
    "process_alive",
    "read_pidfile",
    "run",
    "wait_for",
]
