"""The controller's own network namespace: where the MSP controller and its management network live.

    root namespace                        namespace msp-ctl (no default route)
    msp-op 198.19.255.1/30  <-- veth -->  op0 198.19.255.2/30   REST for the operator and tests
                                          msp-mgmt (Linux bridge) <controller_address>/24
                                            m-<node> veths --> mgmt0 in each box and BGP router

The namespace holds loopback, the operator link and the management bridge, and no default
route. Whatever the controller does, even after the topology is gone or when it is killed
half-way (a BGP speaker reconnecting to its neighbours, say), it can reach nothing but this
namespace, the nodes on the management bridge and the root end of the operator link: no
packet of it can leave the machine. Containment by construction, not by stop order.

Everything is created and removed by name (`ip netns del msp-ctl` takes the veths with it).
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import subprocess
from collections.abc import Sequence

NAMESPACE = "msp-ctl"
MGMT_BRIDGE = "msp-mgmt"
MGMT_PREFIXLEN = 24  # the management network is the controller address's /24
OPERATOR_ROOT_INTF, OPERATOR_NS_INTF = "msp-op", "op0"
OPERATOR_NETWORK = ipaddress.IPv4Network("198.19.255.0/30")  # RFC 2544 range, like the rest
OPERATOR_ROOT_IP, OPERATOR_NS_IP = "198.19.255.1", "198.19.255.2"


class NamespaceError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def exists() -> bool:
    return os.path.exists(f"/run/netns/{NAMESPACE}")


def management_network(controller_address: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{controller_address}/{MGMT_PREFIXLEN}", strict=False)


def check_addresses(controller_address: str) -> None:
    """The management network must not swallow the operator link."""
    mgmt = management_network(controller_address)
    if mgmt.overlaps(OPERATOR_NETWORK):
        raise NamespaceError(f"the management network {mgmt} (from msp.controller_address "
                             f"{controller_address}) overlaps the operator link {OPERATOR_NETWORK}")


def _sysctl(*settings: str) -> None:
    _ip("netns", "exec", NAMESPACE, "sysctl", "-qw", *settings)


def ensure(controller_address: str) -> bool:
    """Create the namespace, its operator link and management bridge if missing.

    Returns True if this call created the namespace (the caller then removes it)."""
    check_addresses(controller_address)
    created = not exists()
    if created:
        _ip("netns", "add", NAMESPACE)
        _sysctl("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _ip("-n", NAMESPACE, "link", "set", "lo", "up")
    if not link_exists(OPERATOR_NS_INTF, NAMESPACE):
        if link_exists(OPERATOR_ROOT_INTF):
            _ip("link", "del", OPERATOR_ROOT_INTF)  # a root end left without its namespace
        _ip("link", "add", OPERATOR_ROOT_INTF, "type", "veth", "peer", "name", OPERATOR_NS_INTF,
            "netns", NAMESPACE)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{OPERATOR_ROOT_INTF}.disable_ipv6=1"],
                       capture_output=True, check=False)
        _ip("addr", "replace", f"{OPERATOR_ROOT_IP}/{OPERATOR_NETWORK.prefixlen}", "dev", OPERATOR_ROOT_INTF)
        _ip("link", "set", OPERATOR_ROOT_INTF, "up")
        _ip("-n", NAMESPACE, "addr", "replace", f"{OPERATOR_NS_IP}/{OPERATOR_NETWORK.prefixlen}",
            "dev", OPERATOR_NS_INTF)
        _ip("-n", NAMESPACE, "link", "set", OPERATOR_NS_INTF, "up")
    mgmt = management_network(controller_address)
    ensure_bridge(MGMT_BRIDGE, f"{controller_address}/{mgmt.prefixlen}")
    return created


def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ("-n", netns) if netns else ()
    return bool(_ip(*prefix, "-o", "link", "show", "dev", name, check=False).strip())


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC for a bridge, derived from its name."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def ensure_bridge(name: str, address: str | None) -> None:
    """A Linux bridge in the namespace, with a fixed MAC and the address, up.

    The fixed MAC matters: a Linux bridge otherwise takes the lowest MAC of its ports, so it
    changed whenever a node's management veth joined, and nodes that had resolved the
    controller's address kept the old MAC for 5-10 s (their controller connections stalled)."""
    if not link_exists(name, NAMESPACE):
        _ip("-n", NAMESPACE, "link", "add", name, "address", bridge_mac(name), "type", "bridge")
    if address:
        _ip("-n", NAMESPACE, "addr", "replace", address, "dev", name)
    _ip("-n", NAMESPACE, "link", "set", name, "up")


def delete_link(name: str) -> None:
    if exists() and link_exists(name, NAMESPACE):
        _ip("-n", NAMESPACE, "link", "del", name)


def pids() -> list[int]:
    """Processes running in the namespace (only the project starts any there)."""
    if not exists():
        return []
    return [int(p) for p in _ip("netns", "pids", NAMESPACE, check=False).split() if p.isdigit()]


def remove(kill: bool = False) -> None:
    """Delete the namespace by name (its veths and bridge go with it).

    kill: first SIGKILL what still runs in it (a controller left by a crashed run). Without
    it, such a process keeps an unnamed namespace that still reaches nothing outside."""
    if not exists():
        return
    if kill:
        for pid in pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _ip("netns", "del", NAMESPACE)
    if link_exists(OPERATOR_ROOT_INTF):
        _ip("link", "del", OPERATOR_ROOT_INTF, check=False)


def exec_argv(argv: Sequence[str]) -> list[str]:
    """argv run inside the namespace (`ip netns exec` execs it: the PID stays the command's)."""
    return ["ip", "netns", "exec", NAMESPACE, *argv]


def listening(port: int, address: str | None = None) -> bool:
    """Is a TCP socket listening on port (and address) inside the namespace?"""
    proc = subprocess.run(["ss", "-N", NAMESPACE, "-Hltn", f"sport = :{port}"], capture_output=True,
                          text=True, timeout=10, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return any(address is None or f"{address}:{port}" in line for line in lines)
