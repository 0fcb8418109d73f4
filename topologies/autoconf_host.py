"""A homenet host that configures itself, like an unmodified home device: busybox udhcpc
(Debian's udhcpc package, its stock script) for IPv4, the kernel's SLAAC for IPv6.

The reference network's hosts are static (topologies/reference.py); use_autoconf() turns one
of them into a DHCP/SLAAC host at run time:

    lease = use_autoconf(ref["h2"], "h2-eth0", run_dir)
    lease.ipv4, lease.router, lease.dns, lease.mtu

udhcpc's script writes /etc/resolv.conf: it runs in a private mount namespace where a file
of the run directory is bound over it, so the machine's own resolver file is never touched.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

from topologies.ovsbox import run, wait_for

UDHCPC_SCRIPT = "/etc/udhcpc/default.script"


@dataclass(frozen=True)
class HostLease:
    ipv4: ipaddress.IPv4Interface
    router: str | None  # the IPv4 default gateway udhcpc installed
    dns: tuple[str, ...]  # nameservers the stock script wrote
    mtu: int  # the link MTU after DHCP (option 26)


def _addresses(host: Any, intf: str, family: str) -> list[dict[str, Any]]:
    out = run(["ip", "-j", f"-{family}", "addr", "show", "dev", intf, "scope", "global"], host)
    return [a for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def use_autoconf(host: Any, intf: str, run_dir: str, timeout_s: float = 20.0, request: str | None = None) -> HostLease:
    """Forget the host's static addressing on intf; get IPv4 by DHCP (udhcpc, which exits
    once it holds a lease) and let the kernel form IPv6 addresses from router
    advertisements. request: an address to ask for (udhcpc -r). Returns what DHCP gave;
    wait_slaac() waits for IPv6."""
    resolv = os.path.join(run_dir, f"{host.name}-resolv.conf")
    with open(resolv, "w", encoding="ascii"):
        pass
    lines = [f"addr flush dev {intf} scope global", f"route flush dev {intf}", f"link set {intf} mtu 1500"]
    run(["ip", "-batch", "-"], host, input="\n".join(lines) + "\n")
    run(["ip", "-6", "route", "flush", "dev", intf], host, check=False)
    run(["sysctl", "-qw", f"net.ipv6.conf.{intf}.accept_ra=1", f"net.ipv6.conf.{intf}.autoconf=1",
         f"net.ipv6.conf.{intf}.forwarding=0"], host)
    # The kernel solicits a router when the link comes up: bounce it so that it does now.
    run(["ip", "link", "set", intf, "down"], host)
    run(["ip", "link", "set", intf, "up"], host)
    tries = max(3, int(timeout_s) - 5)  # one DISCOVER a second, then udhcpc gives up (-n)
    client = (f"mount --bind {shlex.quote(resolv)} /etc/resolv.conf && "
              f"exec udhcpc -i {shlex.quote(intf)} -f -q -n -t {tries} -T 1 -s {UDHCPC_SCRIPT}"
              + (f" -r {shlex.quote(request)}" if request else ""))
    run(["unshare", "--mount", "--propagation", "private", "sh", "-c", client], host, timeout=timeout_s + 5)
    addresses = _addresses(host, intf, "4")
    if not addresses:
        raise RuntimeError(f"{host.name}: udhcpc exited but {intf} has no IPv4 address")
    first = addresses[0]
    routes = run(["ip", "-4", "route", "show", "default", "dev", intf], host)
    router = re.search(r"via (\S+)", routes)
    with open(resolv, encoding="ascii") as handle:
        dns = tuple(re.findall(r"^nameserver (\S+)", handle.read(), re.MULTILINE))
    mtu = int(json.loads(run(["ip", "-j", "link", "show", "dev", intf], host))[0]["mtu"])
    return HostLease(ipaddress.IPv4Interface(f"{first['local']}/{first['prefixlen']}"),
                     router.group(1) if router else None, dns, mtu)


@dataclass(frozen=True)
class HostSlaac:
    ipv6: ipaddress.IPv6Interface  # formed from the advertised prefix
    router: str  # the default router's (link-local) address
    mtu: int  # the IPv6 MTU the advertisement set


def wait_slaac(host: Any, intf: str, prefix: ipaddress.IPv6Network, timeout_s: float = 20.0) -> HostSlaac:
    """Wait until the kernel holds an address of `prefix` formed by SLAAC and a default route
    learned from an advertisement."""
    def formed() -> HostSlaac | None:
        for address in _addresses(host, intf, "6"):
            ip = ipaddress.IPv6Interface(f"{address['local']}/{address['prefixlen']}")
            if ip.ip not in prefix or address.get("dynamic") is not True:
                continue
            route = re.search(r"default via (\S+) .*proto ra",
                              run(["ip", "-6", "route", "show", "default", "dev", intf], host))
            if route is None:
                return None
            mtu = int(run(["sysctl", "-n", f"net.ipv6.conf.{intf}.mtu"], host).strip())
            return HostSlaac(ip, route.group(1), mtu)
        return None
    return wait_for(formed, timeout_s, interval=0.2, what=f"{host.name} to form a SLAAC address in {prefix}")
