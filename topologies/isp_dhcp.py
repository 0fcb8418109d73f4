"""An emulated ISP's DHCPv4 server: Debian's dnsmasq (DHCP only, no DNS) in the ISP's
namespace, on its customer interface, started and stopped by pid (we are its parent).
An ISP that offers IPv6 (prefix6) also sends router advertisements for that /64 there:
its customers configure themselves by SLAAC.

Each customer MAC gets a fixed address from a hosts file (dhcp-hostsfile), so a test can
renumber a customer: rewrite the file, SIGHUP dnsmasq; at the customer's next renewal
dnsmasq refuses the old address (NAK) and offers the new one.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess

from mininet.node import Host

from topologies.ovsbox import wait_for

LEASE_S = 600  # renewals come from the test (SIGUSR1 to the client), not from the clock


class IspDhcp:
    def __init__(self, node: Host, intf: str, gateway: str, directory: str, prefix6: str | None = None) -> None:
        self.node, self.intf, self.gateway = node, intf, ipaddress.IPv4Interface(gateway)
        self.prefix6 = ipaddress.IPv6Network(prefix6) if prefix6 else None
        self.directory = directory
        self.hosts_file = os.path.join(directory, "dhcp-hosts")
        self.proc: subprocess.Popen | None = None

    def set_host(self, mac: str, address: str) -> None:
        """Give mac this address from now on (SIGHUP makes a running dnsmasq read it)."""
        os.makedirs(self.directory, exist_ok=True)
        with open(self.hosts_file, "w") as handle:
            handle.write(f"{mac},{address}\n")
        if self.running():
            self.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    def renumber(self, mac: str, address: str, timeout: float = 5.0) -> None:
        """set_host() on a running server, returning once dnsmasq has read the new file."""
        log = os.path.join(self.directory, "dnsmasq.log")

        def reads() -> int:
            try:
                with open(log) as handle:
                    return handle.read().count(f"read {self.hosts_file}")
            except OSError:
                return 0

        before = reads()
        self.set_host(mac, address)
        wait_for(lambda: reads() > before, timeout, what=f"dnsmasq on {self.node.name} to read {self.hosts_file}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running():
            return
        os.makedirs(self.directory, exist_ok=True)
        if not os.path.exists(self.hosts_file):
            open(self.hosts_file, "w").close()
        net = self.gateway.network
        low, high = net.network_address + 100, net.network_address + 199
        ipv6 = []
        if self.prefix6 is not None:  # the router's own address in the prefix: dnsmasq advertises it
            router6 = f"{self.prefix6.network_address + 1}/{self.prefix6.prefixlen}"
            subprocess.run(["mnexec", "-a", str(self.node.pid), "sh", "-c",
                            f"sysctl -qw net.ipv6.conf.{self.intf}.disable_ipv6=0 net.ipv6.conf.all.forwarding=1"
                            f" && ip -6 addr replace {router6} dev {self.intf} nodad"], check=True)
            prefix, length = self.prefix6.network_address, self.prefix6.prefixlen
            ipv6 = ["--enable-ra", f"--dhcp-range={prefix},ra-only,{length},{LEASE_S}", f"--ra-param={self.intf},10"]
        self.proc = subprocess.Popen(
            ["mnexec", "-a", str(self.node.pid), "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
             # As root: its files may sit below directories only root can enter (pytest's tmp).
             "--user=root",
             "--port=0", f"--interface={self.intf}", "--bind-interfaces", "--except-interface=lo",
             f"--dhcp-range={low},{high},{net.netmask},{LEASE_S}",
             f"--dhcp-option=option:router,{self.gateway.ip}", f"--dhcp-hostsfile={self.hosts_file}", *ipv6,
             f"--dhcp-leasefile={os.path.join(self.directory, 'leases')}", "--dhcp-authoritative",
             f"--pid-file={os.path.join(self.directory, 'dnsmasq.pid')}",
             f"--log-facility={os.path.join(self.directory, 'dnsmasq.log')}", "--log-dhcp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(os.path.join(self.directory, "dnsmasq.pid")) or not self.running(),
                 5, what=f"dnsmasq on {self.node.name}")
        if not self.running():
            raise RuntimeError(f"dnsmasq on {self.node.name} exited; see {self.directory}/dnsmasq.log")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pid_file = os.path.join(self.directory, "dnsmasq.pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)


__all__ = ["IspDhcp"]
