"""Smoke test of the reference topology (topologies/reference.py), without a controller.

Needs root, Open vSwitch and Mininet; run with
    .venv/bin/pytest tests/integration/test_topology_smoke.py -q -x
The tests share one network (module fixture) and run in file order; the last one stops it
and checks that nothing is left. Every wait is a poll with a deadline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
    pytest.mark.skipif(shutil.which("mnexec") is None, reason="needs Mininet's mnexec"),
]

pytest.importorskip("mininet")

from msp_controller.config import load_config
from topologies.faults import isp_blackhole, isp_counters, isp_faults, isp_loss
from topologies.ovsbox import CommandError, process_alive, run, wait_for
from topologies.reference import (
    DEFAULT_CONFIG,
    SPARE_CONTROLLER_ADDRESS,
    Plan,
    ReferenceNetwork,
    leftovers,
    mgmt_conflicts,
    resolve_config_path,
)

MGMT_LINK = re.compile(r"^\d+: (m-[^:@]+|msp-mgmt)[:@]", re.MULTILINE)


def succeeds(node, *argv: str) -> bool:
    try:
        run(argv, node, timeout=10)
        return True
    except CommandError:
        return False


def wait_ping(node, address: str, timeout: float = 10.0) -> None:
    wait_for(lambda: succeeds(node, "ping", "-c1", "-W1", "-n", address), timeout,
             what=f"{node.name} to ping {address}")


def netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def bfd_state(box, port: str) -> str:
    status = box.vsctl("get", "interface", port, "bfd_status:state").strip()
    return status.strip('"')


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    controller_address = None
    plan = Plan(load_config(resolve_config_path(DEFAULT_CONFIG)))
    clashes = mgmt_conflicts(plan)
    if clashes:
        warnings.warn(f"msp.controller_address {plan.config.controller_address} clashes with "
                      f"this host ({', '.join(clashes)}); testing with {SPARE_CONTROLLER_ADDRESS}")
        controller_address = SPARE_CONTROLLER_ADDRESS
    network = ReferenceNetwork(DEFAULT_CONFIG, run_dir=str(tmp_path_factory.mktemp("msp-run")),
                               controller_address=controller_address)
    network.start()
    try:
        yield network
    finally:
        network.stop()


def test_each_box_runs_its_own_ovs(ref):
    root_ns = netns(os.getpid())
    seen = set()
    for name, box in ref.boxes.items():
        pids = box.ovs_pids()
        assert set(pids) == {"ovs-vswitchd", "ovsdb-server"}, name
        for daemon, pid in pids.items():
            assert netns(pid) == netns(box.pid), f"{name}'s {daemon} is not in {name}'s namespace"
        assert netns(pids["ovs-vswitchd"]) != root_ns
        seen.add(netns(pids["ovs-vswitchd"]))
        assert box.vsctl("get", "Open_vSwitch", ".", "other_config:userspace-tso-enable").strip() == '"true"'
        assert os.path.isdir(ref.box_dir(name))
    assert len(seen) == 2, "the boxes share a namespace"

    mspmb, edge = ref["mspmb"], ref["edge1"]
    assert set(mspmb.vsctl("list-br").split()) == {"br-home", "br-ispA", "br-ispB"}
    assert set(edge.vsctl("list-br").split()) == {"br-msp", "br-up"}
    target = f"tcp:{ref.config.controller_address}:{ref.config.controller_port}"
    for box, bridges in ((mspmb, ("br-home", "br-ispA", "br-ispB")), (edge, ("br-msp", "br-up"))):
        for bridge in bridges:
            assert box.vsctl("get-controller", bridge).strip() == target
            assert box.vsctl("get", "bridge", bridge, "datapath_type").strip() == "netdev"
            assert "OFPT_FEATURES_REPLY" in box.ofctl("show", bridge)  # OpenFlow 1.3 via .mgmt
    for box, ports in ((mspmb, ("edge1-ispA", "edge1-ispB")), (edge, ("hn1-ispA", "hn1-ispB"))):
        for port in ports:
            assert box.vsctl("get", "interface", port, "type").strip() == "vxlan"
            assert box.vsctl("get", "interface", port, "bfd:enable").strip() == '"true"'
            assert box.vsctl("get", "interface", port, "options:key").strip() == '"1"'
    assert "ovs-netdev" in mspmb.appctl("dpif/show")
    with pytest.raises(CommandError, match="no bridge named"):
        mspmb.vsctl("get-controller", "br-nonesuch")


def test_addresses_and_routes(ref):
    wait_ping(ref["ispA"], "198.18.101.1")
    wait_ping(ref["ispB"], "198.18.102.1")
    wait_ping(ref["inet"], "203.0.113.10")
    wait_ping(ref["inet"], "2001:db8:200::10")
    wait_ping(ref["ispA"], "203.0.113.10")  # through inet

    up = run(["ip", "-4", "-o", "addr", "show", "dev", "br-up"], ref["edge1"])
    assert "198.18.10.11/24" in up and "198.18.10.12/24" in up
    assert "default via 198.18.10.1 dev br-up" in run(["ip", "route"], ref["edge1"])
    assert run(["ip", "-o", "addr", "show", "dev", "edge1-inet"], ref["edge1"]).count("inet") == 0

    routes = run(["ip", "route"], ref["mspmb"])
    assert "198.18.10.11 via 198.18.1.1 dev br-ispA" in routes
    assert "198.18.10.12 via 198.18.2.1 dev br-ispB" in routes
    assert "198.18.1.2/24" in run(["ip", "-o", "addr", "show", "dev", "br-ispA"], ref["mspmb"])

    inet = ref["inet"]
    assert "via 198.18.20.2" in run(["ip", "route", "get", "198.51.100.10"], inet)
    assert "via 2001:db8:ff20::2" in run(["ip", "-6", "route", "get", "2001:db8:100::10"], inet)
    for isp, transit in (("ispA", "198.18.101.1"), ("ispB", "198.18.102.1")):
        # ISPs know the PI prefix only through their default route.
        assert f"via {transit}" in run(["ip", "route", "get", "198.51.100.10"], ref[isp])
        assert "198.51.100" not in run(["ip", "route"], ref[isp])

    h1 = run(["ip", "-o", "addr", "show", "dev", "h1-eth0"], ref["h1"])
    assert "198.51.100.10/24" in h1 and "2001:db8:100::10/64" in h1 and "tentative" not in h1
    assert "mtu 1450" in run(["ip", "link", "show", "dev", "h1-eth0"], ref["h1"])
    assert "default via 198.51.100.1" in run(["ip", "route"], ref["h2"])
    assert "default via 2001:db8:100::1" in run(["ip", "-6", "route"], ref["h2"])
    for port in ("mspmb-lan1", "mspmb-ispA"):
        assert "NOARP" in run(["ip", "link", "show", "dev", port], ref["mspmb"])


def test_management_link(ref):
    address = ref.config.controller_address
    for box in ref.boxes.values():
        wait_ping(box, address)
    ports = run(["ip", "-o", "link", "show", "master", "msp-mgmt"])
    assert "m-mspmb" in ports and "m-edge1" in ports


def test_underlay_bfd_and_faults_with_hand_installed_flows(ref):
    """With NORMAL flows on the underlay bridges (no controller) the tunnels come up, and
    the ISP faults and counters act on exactly one ISP."""
    mspmb, edge = ref["mspmb"], ref["edge1"]
    isp_a, isp_b = ref["ispA"], ref["ispB"]
    for box, bridge in ((mspmb, "br-ispA"), (mspmb, "br-ispB"), (edge, "br-up")):
        box.ofctl("add-flow", bridge, "priority=0,actions=NORMAL")
    try:
        wait_ping(mspmb, "198.18.10.11")
        wait_ping(mspmb, "198.18.10.12")

        # Which ISP carried it: 40 big pings to .11 go through ispA only.
        before_a, before_b = isp_counters(isp_a), isp_counters(isp_b)
        run(["ping", "-q", "-c40", "-i0.005", "-s1400", "-W1", "198.18.10.11"], mspmb)
        after_a, after_b = isp_counters(isp_a), isp_counters(isp_b)
        sent = 40 * 1400
        assert after_a["up"]["bytes"] - before_a["up"]["bytes"] >= sent
        assert after_a["down"]["bytes"] - before_a["down"]["bytes"] >= sent
        assert after_b["up"]["bytes"] - before_b["up"]["bytes"] < sent / 2

        tunnels = ((mspmb, "edge1-ispA"), (mspmb, "edge1-ispB"), (edge, "hn1-ispA"), (edge, "hn1-ispB"))
        wait_for(lambda: all(bfd_state(b, p) == "up" for b, p in tunnels), 15, what="BFD up on all tunnels")

        isp_blackhole(isp_a, True)
        isp_blackhole(isp_a, True)  # idempotent
        assert isp_faults(isp_a) == {"blackhole"}
        wait_for(lambda: bfd_state(mspmb, "edge1-ispA") == "down", 10, what="BFD down over ispA")
        assert bfd_state(mspmb, "edge1-ispB") == "up"
        assert not succeeds(mspmb, "ping", "-c1", "-W1", "198.18.10.11")
        isp_blackhole(isp_a, False)
        isp_blackhole(isp_a, False)  # idempotent
        assert isp_faults(isp_a) == set()
        wait_for(lambda: bfd_state(mspmb, "edge1-ispA") == "up", 10, what="BFD up again over ispA")
        wait_ping(mspmb, "198.18.10.11")

        isp_loss(isp_b, 50)
        isp_loss(isp_b, 50)
        isp_blackhole(isp_b, True)
        assert isp_faults(isp_b) == {"loss", "blackhole"}
        isp_blackhole(isp_b, False)
        assert isp_faults(isp_b) == {"loss"}
        answered = _ping_stats(mspmb, "198.18.10.12", 200)
        assert 5 <= answered <= 60, f"{answered}% of pings answered at 50% loss each way"
        isp_loss(isp_b, 0)
        assert isp_faults(isp_b) == set()
        wait_ping(mspmb, "198.18.10.12")
        with pytest.raises(ValueError):
            isp_loss(isp_b, 101)
    finally:
        for box, bridge in ((mspmb, "br-ispA"), (mspmb, "br-ispB"), (edge, "br-up")):
            box.ofctl("del-flows", bridge)


def _ping_stats(node, address: str, count: int) -> float:
    """Percentage of `count` pings answered (ping exits non-zero on loss: no check)."""
    out = run(["ping", "-q", "-n", f"-c{count}", "-i0.005", "-W1", address], node, timeout=60,
              check=False)
    match = re.search(r"(\d+) received", out)
    assert match, out
    return 100.0 * int(match.group(1)) / count


def _iperf(server, client, address: str) -> float:
    """One-second TCP iperf3 from client to address (on server); bits per second."""
    proc = server.popen(["iperf3", "-s", "-1", "-B", address])
    try:
        wait_for(lambda: ":5201 " in run(["ss", "-Htln"], server), 10, what="iperf3 to listen")
        out = run(["iperf3", "-c", address, "-t", "1", "-J"], client, timeout=30)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def test_tcp_through_netdev_bridges(ref):
    """TCP works through the boxes' userspace bridges (userspace TSO): host to host over
    br-home, and box to box over the underlay (hand-installed NORMAL flows)."""
    mspmb, edge = ref["mspmb"], ref["edge1"]
    flows = ((mspmb, "br-home"), (mspmb, "br-ispA"), (edge, "br-up"))
    for box, bridge in flows:
        box.ofctl("add-flow", bridge, "priority=0,actions=NORMAL")
    try:
        wait_ping(ref["h1"], "198.51.100.20")
        assert _iperf(ref["h2"], ref["h1"], "198.51.100.20") > 100e6
        wait_ping(mspmb, "198.18.10.11")
        assert _iperf(edge, mspmb, "198.18.10.11") > 100e6
    finally:
        for box, bridge in flows:
            box.ofctl("del-flows", bridge)


def test_stop_leaves_nothing(ref):
    nodes = list(ref.net.hosts)
    namespaces = {netns(node.pid) for node in nodes} - {None}
    pids = [(pid, daemon) for box in ref.boxes.values() for daemon, pid in box.ovs_pids().items()]
    shells = [node.pid for node in nodes]
    box_dirs = [ref.box_dir(name) for name in ref.plan.boxes]
    assert len(namespaces) == len(nodes) and len(pids) == 4

    ref.stop()
    ref.stop()  # idempotent

    for pid, daemon in pids:
        assert not process_alive(pid, daemon), f"{daemon} (pid {pid}) survived"
    for pid in shells:
        assert not process_alive(pid), f"node shell {pid} survived"
    in_namespaces = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and netns(int(entry)) in namespaces and process_alive(int(entry)):
            in_namespaces.append(entry)
    assert not in_namespaces, f"processes left in the topology's namespaces: {in_namespaces}"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert not MGMT_LINK.findall(links), links
    for path in box_dirs + [os.path.join(ref.run_dir, "nodes")]:
        assert not os.path.exists(path), path
    assert leftovers(ref.plan, ref.run_dir) == []
