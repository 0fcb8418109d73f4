"""Containment: nothing the project starts can send a packet off this machine.

The guard itself is tested on a link of our own (root end msp-gt0, peer in namespace
msp-gtest): a packet sent over it from the root namespace to a project address counts as a
leak for a guard that does not list msp-gt0 as the project's, and still never leaves the
machine if the guard failed (it would only reach our namespace).
"""
from __future__ import annotations

import socket
import subprocess

import pytest

from tests.integration.conftest import NEEDS
from topologies import control_ns
from topologies.leak_guard import LeakError, LeakGuard, stale_tables

pytestmark = NEEDS

TEST_NS, TEST_LINK, PEER = "msp-gtest", "msp-gt0", "198.18.250.2"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture
def test_link():
    sh("ip", "netns", "del", TEST_NS, check=False)
    sh("ip", "link", "del", TEST_LINK, check=False)
    sh("ip", "netns", "add", TEST_NS)
    try:
        sh("ip", "link", "add", TEST_LINK, "type", "veth", "peer", "name", "gt1", "netns", TEST_NS)
        sh("ip", "addr", "add", "198.18.250.1/30", "dev", TEST_LINK)
        sh("ip", "link", "set", TEST_LINK, "up")
        sh("ip", "-n", TEST_NS, "addr", "add", f"{PEER}/30", "dev", "gt1")
        sh("ip", "-n", TEST_NS, "link", "set", "gt1", "up")
        yield
    finally:
        sh("ip", "netns", "del", TEST_NS, check=False)
        sh("ip", "link", "del", TEST_LINK, check=False)


def test_the_guard_counts_drops_and_names_a_leak(test_link):
    guard = LeakGuard(project_interfaces=(control_ns.OPERATOR_ROOT_INTF,))
    with pytest.raises(LeakError) as caught:
        with guard:
            assert guard.count() == 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for _ in range(2):
                    with pytest.raises(PermissionError):  # dropped by the guard, not sent
                        udp.sendto(b"leak", (PEER, 9))
            assert guard.count() == 2
    assert "2 packet(s) tried to leave the machine" in str(caught.value)
    assert f"{PEER} udp/9: 2 packet(s)" in str(caught.value)
    # Removed by name on the way out, even when it failed.
    assert guard.table not in sh("nft", "list", "tables")
    assert guard.table not in stale_tables()


def test_the_guard_passes_loopback_and_project_links(test_link):
    with LeakGuard(project_interfaces=(TEST_LINK,)) as guard:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"ours", (PEER, 9))
            udp.sendto(b"local", ("127.0.0.1", 9))
        assert guard.count() == 0


def test_the_controller_namespace_has_no_way_off_the_machine():
    """Even with the topology gone, a BGP speaker in the namespace cannot reach its neighbour
    (or anything else) through a default route: there is none."""
    created = control_ns.ensure("198.19.0.1")
    try:
        with LeakGuard() as guard:
            routes = sh("ip", "-n", control_ns.NAMESPACE, "route", "show")
            assert "default" not in routes
            for target in ("192.0.2.1", "8.8.8.8", "198.18.250.9"):
                out = subprocess.run(["ip", "-n", control_ns.NAMESPACE, "route", "get", target],
                                     capture_output=True, text=True, check=False)
                assert out.returncode != 0 and "unreachable" in out.stderr, (target, out.stdout)
            connect = subprocess.run(
                control_ns.exec_argv(["python3", "-c",
                                      "import socket; socket.create_connection(('192.0.2.1', 179), 2)"]),
                capture_output=True, text=True, check=False)
            assert connect.returncode != 0 and "unreachable" in connect.stderr
            assert guard.count() == 0
    finally:
        if created:
            control_ns.remove()
