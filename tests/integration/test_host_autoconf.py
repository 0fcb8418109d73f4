"""End to end: an unmodified host configures itself in the homenet. h2 drops its static
addressing and runs busybox udhcpc (Debian's stock script) and the kernel's SLAAC; the
controller answers DHCP and router solicitations at the MSPMB (packet-in, packet-out).
h2 gets an address from the pool, the gateway, the resolvers and the tunnel MTU, forms an
IPv6 address from the advertised /64, and reaches the server over both families; its lease
survives a controller restart (the store) and is not handed to another device meanwhile."""
from __future__ import annotations

import select
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import NEEDS

pytestmark = [*NEEDS, pytest.mark.skipif(shutil.which("udhcpc") is None, reason="needs udhcpc (make install)")]
pytest.importorskip("mininet")

from msp_controller.model.config import load_config
from topologies.autoconf_host import use_autoconf, wait_slaac
from topologies.measure import SERVER4, SERVER6, wait_reachable
from topologies.scenario import REFERENCE_CONFIG

# A router solicitation to all routers (RFC 4861), hop limit 255; the kernel fills in the
# ICMPv6 checksum of a raw ICMPv6 socket.
SOLICIT = ("import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); "
           "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255); "
           "s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ('ff02::2', 0, 0, socket.if_nametoindex(sys.argv[1])))")


def solicited_advert(host, intf: str, timeout_s: float = 15.0) -> str:
    """The router advertisement that answers a solicitation from host, decoded by tcpdump
    (RDNSS is for userspace: the kernel does not apply it, a resolver daemon would). The
    solicitation goes out only once tcpdump says it is listening."""
    capture = host.popen(["timeout", str(int(timeout_s)), "tcpdump", "-l", "-n", "-vv", "-c", "1", "-i", intf,
                          "icmp6 and ip6[40] == 134"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        listening = ""
        while "listening on" not in listening and time.monotonic() < deadline:
            ready, _, _ = select.select([capture.stderr], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = capture.stderr.readline().decode()
            if not line:
                break
            listening += line
        assert "listening on" in listening, f"tcpdump did not start: {listening!r}"
        # The controller answers a port at most every 3 s (and use_autoconf has just
        # solicited): ask once a second until an advertisement comes.
        while time.monotonic() < deadline:
            host.cmd(f"{sys.executable} -c {shlex.quote(SOLICIT)} {intf}")
            try:
                return capture.communicate(timeout=1.0)[0].decode()
            except subprocess.TimeoutExpired:
                continue
        return ""
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()


def test_a_dhcp_and_slaac_host_gets_its_configuration_and_reaches_the_server(msp, tmp_path):
    net, _ = msp
    homenet = load_config(str(REFERENCE_CONFIG)).homenet("home1")
    settings = homenet.autoconf
    h2 = net["h2"]

    lease = use_autoconf(h2, "h2-eth0", str(tmp_path))
    advert = solicited_advert(h2, "h2-eth0")
    assert "router advertisement" in advert and "mtu option" in advert, advert
    assert f"addr: {settings.dns6[0]}" in advert, advert  # RDNSS (RFC 8106)
    assert f"prefix info option (3), length 32 (4): {homenet.lan_ipv6.network}" in advert, advert
    assert settings.pool_start <= lease.ipv4.ip <= settings.pool_end, lease
    assert lease.ipv4.network == homenet.lan_ipv4.network
    assert lease.router == str(homenet.lan_ipv4.ip)
    assert lease.dns == tuple(map(str, settings.dns4))
    assert lease.mtu == settings.mtu == 1450  # the underlay's 1500 less VXLAN's 50

    slaac = wait_slaac(h2, "h2-eth0", homenet.lan_ipv6.network)
    assert slaac.router.startswith("fe80::")  # the gateway's link-local address
    assert slaac.mtu == 1450

    assert wait_reachable(h2, SERVER4, timeout=15) is not None
    assert wait_reachable(h2, SERVER6, timeout=15) is not None
    # The server's answers find the host by its new addresses (the controller resolves them).
    out = h2.cmd(f"ping -n -c 1 -W 2 -I {slaac.ipv6.ip} {SERVER6}")
    assert " 0% packet loss" in out, out
    # The static host next door is untouched by the advertisements.
    h1_addresses = net["h1"].cmd("ip -6 addr show dev h1-eth0 scope global")
    assert "dynamic" not in h1_addresses, h1_addresses


def test_a_lease_survives_a_controller_restart_and_is_not_given_to_another_host(msp, tmp_path):
    net, controller = msp
    h2 = net["h2"]
    mac = h2.cmd("cat /sys/class/net/h2-eth0/address").strip()
    first = use_autoconf(h2, "h2-eth0", str(tmp_path))
    with sqlite3.connect(controller.state_path) as db:  # the binding is in the store
        assert (str(first.ipv4.ip), mac) in set(db.execute("SELECT ip, mac FROM leases"))
    controller.stop()
    controller.start()
    try:
        # Another device (a new MAC) asks for that very address after the restart: it gets another.
        h2.cmd("ip link set h2-eth0 address 02:00:00:00:99:01")
        other = use_autoconf(h2, "h2-eth0", str(tmp_path), timeout_s=40, request=str(first.ipv4.ip))
        assert other.ipv4.ip != first.ipv4.ip
    finally:
        h2.cmd(f"ip link set h2-eth0 address {mac}")
    again = use_autoconf(h2, "h2-eth0", str(tmp_path), timeout_s=40)
    assert again.ipv4.ip == first.ipv4.ip  # its holder gets it back
    assert wait_reachable(h2, SERVER4, timeout=15) is not None
