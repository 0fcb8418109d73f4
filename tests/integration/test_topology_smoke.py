"""Smoke test of the reference topology (topologies/reference.py), without a controller.

Two MSP edges, each with its own OVS and its upstream BIRD router (up1, up2), BIRD on inet;
the routers' sessions to the controller stay down (no controller), except while a
stand-in BGP speaker (Ryu's BGPSpeaker, not the MSP app) plays the controller's part.

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
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
    pytest.mark.skipif(shutil.which("mnexec") is None, reason="needs Mininet's mnexec"),
]

pytest.importorskip("mininet")

from msp_controller.model.config import mspmb_tunnel_port
from topologies import control_ns
from topologies.bird import best_route, bgp_states, bird_paths, birdc, routes
from topologies.faults import (
    cut_edge_underlay,
    edge_running,
    isp_blackhole,
    isp_counters,
    isp_faults,
    isp_loss,
    start_edge,
    stop_edge,
)
from topologies.network import ReferenceNetwork
from topologies.ovsbox import CommandError, link_exists, process_alive, run, wait_for
from topologies.plan import DEFAULT_CONFIG
from topologies.preflight import leftovers

MGMT_LINK = re.compile(r"^\d+: (m-[^:@]+|msp-mgmt)[:@]", re.MULTILINE)
EDGES = ("edge1", "edge2")
ROUTERS = ("up1", "up2", "inet")
PI4, PI6 = "198.51.100.0/24", "2001:db8:100::/48"


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
    network = ReferenceNetwork(DEFAULT_CONFIG, run_dir=str(tmp_path_factory.mktemp("msp-run")))
    network.start()
    try:
        yield network
    finally:
        network.stop()


def test_each_box_runs_its_own_ovs(ref):
    root_ns = netns(os.getpid())
    seen = set()
    assert set(ref.boxes) == {"mspmb", *EDGES}
    for name, box in ref.boxes.items():
        pids = box.ovs_pids()
        assert set(pids) == {"ovs-vswitchd", "ovsdb-server"}, name
        for daemon, pid in pids.items():
            assert netns(pid) == netns(box.pid), f"{name}'s {daemon} is not in {name}'s namespace"
        assert netns(pids["ovs-vswitchd"]) != root_ns
        seen.add(netns(pids["ovs-vswitchd"]))
        assert box.vsctl("get", "Open_vSwitch", ".", "other_config:userspace-tso-enable").strip() == '"true"'
        assert os.path.isdir(ref.box_dir(name))
    assert len(seen) == 3, "the boxes share a namespace"

    mspmb = ref["mspmb"]
    assert set(mspmb.vsctl("list-br").split()) == {"br-home", "br-ispA", "br-ispB"}
    target = f"tcp:{ref.config.controller_address}:{ref.config.controller_port}"
    boxes = [(mspmb, ("br-home", "br-ispA", "br-ispB"))] + [(ref[e], ("br-msp", "br-up")) for e in EDGES]
    for box, bridges in boxes:
        assert set(box.vsctl("list-br").split()) == set(bridges)
        for bridge in bridges:
            assert box.vsctl("get-controller", bridge).strip() == target
            assert box.vsctl("get", "bridge", bridge, "datapath_type").strip() == "netdev"
            assert "OFPT_FEATURES_REPLY" in box.ofctl("show", bridge)  # OpenFlow 1.3 via .mgmt
    assert ref["edge1"].vsctl("get", "bridge", "br-msp", "other-config:datapath-id").strip() == '"00000000000000e1"'
    assert ref["edge2"].vsctl("get", "bridge", "br-msp", "other-config:datapath-id").strip() == '"00000000000000e3"'

    # The MSPMB: a tunnel to each edge over each ISP, each with BFD, pinned to its ISP.
    homenet = ref.config.homenet("home1")
    expected = {}
    for edge in ref.config.edges:
        for uplink in homenet.uplinks:
            expected[mspmb_tunnel_port(edge, uplink)] = str(edge.tunnel_ip(uplink.slot))
    assert sorted(expected) == ["edge1-ispA", "edge1-ispB", "edge2-ispA", "edge2-ispB"]
    vxlan = [p for p in mspmb.vsctl("list-ports", "br-home").split()
             if mspmb.vsctl("get", "interface", p, "type").strip() == "vxlan"]
    assert sorted(vxlan) == sorted(expected)
    for port, remote in expected.items():
        assert mspmb.vsctl("get", "interface", port, "options:remote_ip").strip() == f'"{remote}"'
        assert mspmb.vsctl("get", "interface", port, "bfd:enable").strip() == '"true"'
        assert mspmb.vsctl("get", "interface", port, "options:key").strip() == '"1"'
    # Each edge: one flow-based tunnel per uplink slot, shared by every homenet, from its
    # own tunnel address, with no BFD of its own (it returns the MSPMB's).
    for edge in ref.config.edges:
        box = ref[edge.name]
        for slot, local in enumerate((edge.tunnel_ip(0), edge.tunnel_ip(1))):
            port = f"vxlan-slot{slot}"
            assert box.vsctl("get", "interface", port, "type").strip() == "vxlan"
            assert box.vsctl("get", "interface", port, "bfd:enable").strip() == '"false"'
            assert box.vsctl("get", "interface", port, "options:local_ip").strip() == f'"{local}"'
            assert box.vsctl("get", "interface", port, "options:remote_ip").strip().strip('"') == "flow"
            assert box.vsctl("get", "interface", port, "options:key").strip().strip('"') == "flow"
    assert "ovs-netdev" in mspmb.appctl("dpif/show")
    with pytest.raises(CommandError, match="no bridge named"):
        mspmb.vsctl("get-controller", "br-nonesuch")


def test_bird_runs_in_each_router_and_peers_with_inet(ref):
    assert set(ref.routers) == set(ROUTERS)
    for name, router in ref.routers.items():
        pid = router.bird_pid()
        assert pid is not None and process_alive(pid, "bird"), name
        assert netns(pid) == netns(router.pid), f"{name}'s bird is not in {name}'s namespace"
        assert os.path.exists(bird_paths(router.bird_dir)["conf"])
        assert os.path.dirname(router.bird_dir) == ref.run_dir

    def sessions_up() -> bool:
        return (all(bgp_states(ref[r]).get(p) == "Established" for r in ("up1", "up2") for p in ("inet4", "inet6"))
                and all(s == "Established" for s in bgp_states(ref["inet"]).values()))

    wait_for(sessions_up, 30, interval=0.2, what="the up<->inet BGP sessions to be Established")
    assert set(bgp_states(ref["inet"])) == {"up1_v4", "up1_v6", "up2_v4", "up2_v6"}
    for router in ("up1", "up2"):
        # No controller: its session waits (BIRD is passive there, the controller connects).
        assert bgp_states(ref[router])["msp"] in ("Passive", "Active", "Connect", "Idle")
        info = birdc(ref[router], "show", "protocols", "all", "msp")
        assert "Neighbor address: 198.19.0.1" in info and "Neighbor AS:      65000" in info
    assert "Local AS:         64501" in birdc(ref["up1"], "show", "protocols", "all", "msp")
    assert "Local AS:         64502" in birdc(ref["up2"], "show", "protocols", "all", "msp")
    with pytest.raises(CommandError, match="syntax error|No such command|Unknown"):
        birdc(ref["inet"], "show", "nonesuch")

    # Nothing announces the PI prefixes yet: inet has no route to them (no static one either).
    for prefix in (PI4, PI6):
        assert routes(ref["inet"], prefix, exact=True) == []
        assert best_route(ref["inet"], prefix, exact=True) is None
    assert run(["ip", "route", "show", PI4], ref["inet"]).strip() == ""
    assert run(["ip", "-6", "route", "show", PI6], ref["inet"]).strip() == ""
    # A connected route, through BIRD's eyes.
    server = best_route(ref["inet"], "203.0.113.10")
    assert server is not None and server.prefix == "203.0.113.0/24" and server.interface == "inet-server"


def test_addresses_and_routes(ref):
    wait_ping(ref["ispA"], "198.18.101.1")
    wait_ping(ref["ispB"], "198.18.102.1")
    wait_ping(ref["inet"], "203.0.113.10")
    wait_ping(ref["inet"], "2001:db8:200::10")
    wait_ping(ref["ispA"], "203.0.113.10")  # through inet

    for edge, net, gateway in (("edge1", "198.18.10", "198.18.10.1"), ("edge2", "198.18.11", "198.18.11.1")):
        up = run(["ip", "-4", "-o", "addr", "show", "dev", "br-up"], ref[edge])
        assert f"{net}.11/24" in up and f"{net}.12/24" in up
        assert f"default via {gateway} dev br-up" in run(["ip", "route"], ref[edge])
        assert run(["ip", "-o", "addr", "show", "dev", f"{edge}-inet"], ref[edge]).count("inet") == 0
        assert f"{gateway}/24" in run(["ip", "-o", "addr", "show", "dev", f"inet-{edge}up"], ref["inet"])

    # Each edge's upstream router: the edge's Internet gateway, transit to inet.
    for n, (router, edge) in enumerate((("up1", "edge1"), ("up2", "edge2")), 1):
        node = ref[router]
        towards_edge = run(["ip", "-o", "addr", "show", "dev", f"{router}-{edge}"], node)
        assert f"198.18.{19 + n}.1/24" in towards_edge and f"2001:db8:ff{19 + n}::1/64" in towards_edge
        assert "mtu 1450" in run(["ip", "link", "show", "dev", f"{router}-{edge}"], node)
        transit = run(["ip", "-o", "addr", "show", "dev", f"{router}-inet"], node)
        assert f"198.18.{200 + n}.2/30" in transit and f"2001:db8:f{200 + n}::2/64" in transit
        inet_side = run(["ip", "-o", "addr", "show", "dev", f"inet-{router}"], ref["inet"])
        assert f"198.18.{200 + n}.1/30" in inet_side and f"2001:db8:f{200 + n}::1/64" in inet_side
        wait_ping(node, f"198.18.{200 + n}.1")
        wait_ping(node, f"2001:db8:f{200 + n}::1")
        wait_ping(node, "203.0.113.10")  # default route via inet
        wait_ping(node, "2001:db8:200::10")
        assert run(["sysctl", "-n", "net.ipv4.ip_forward"], node).strip() == "1"

    routes = run(["ip", "route"], ref["mspmb"])
    for tunnel_ip, via in (("198.18.10.11", "198.18.1.1 dev br-ispA"), ("198.18.10.12", "198.18.2.1 dev br-ispB"),
                           ("198.18.11.11", "198.18.1.1 dev br-ispA"), ("198.18.11.12", "198.18.2.1 dev br-ispB")):
        assert f"{tunnel_ip} via {via}" in routes
    assert "198.18.1.2/24" in run(["ip", "-o", "addr", "show", "dev", "br-ispA"], ref["mspmb"])

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
    for node in [*ref.boxes.values(), ref["up1"], ref["up2"]]:
        wait_ping(node, address)
    ports = run(["ip", "-n", control_ns.NAMESPACE, "-o", "link", "show", "master", "msp-mgmt"])
    for name in ("m-mspmb", "m-edge1", "m-edge2", "m-up1", "m-up2"):
        assert name in ports
    mgmt = {name: run(["ip", "-4", "-o", "addr", "show", "dev", "mgmt0"], ref[name])
            for name in ("mspmb", "edge1", "edge2", "up1", "up2")}
    for name, address in (("mspmb", "198.19.0.2/24"), ("edge1", "198.19.0.3/24"), ("edge2", "198.19.0.4/24"),
                          ("up1", "198.19.0.11/24"), ("up2", "198.19.0.12/24")):
        if ref.config.controller_address == "198.19.0.1":
            assert address in mgmt[name], (name, mgmt[name])
    assert not link_exists("mgmt0", ref["inet"])


# A stand-in for the controller's BGP speaker: Ryu's BGPSpeaker (not the MSP app) on the
# controller's address, announcing the PI prefixes to up1 with edge1 as next hop.
STAND_IN = textwrap.dedent("""
    import sys
    from ryu.lib import hub
    hub.patch(thread=False)
    from ryu.services.protocols.bgp.bgpspeaker import BGPSpeaker
    asn, router_id, neighbor, neighbor_as, nh4, nh6 = sys.argv[1:7]
    speaker = BGPSpeaker(as_number=int(asn), router_id=router_id, bgp_server_port=0)
    speaker.neighbor_add(neighbor, int(neighbor_as), enable_ipv4=True, enable_ipv6=True,
                         connect_mode="active")
    speaker.prefix_add("198.51.100.0/24", next_hop=nh4)
    speaker.prefix_add("2001:db8:100::/48", next_hop=nh6)
    print("announced", flush=True)
    while True:  # until the test terminates it (SIGTERM): its sessions then drop, like a dead controller's
        hub.sleep(1)
""")


def test_bgp_chain_with_a_stand_in_speaker(ref):
    """What the routers do with the controller's announcements: up1 accepts the IPv4 and
    the IPv6 prefix over its IPv4 session (IPv6 next hop resolved over the edge link),
    inet and the kernels route them to up1 and on to edge1; all goes when the session does."""
    up1, up2, inet = ref["up1"], ref["up2"], ref["inet"]
    edge1 = ref.config.edge("edge1")
    # Where the controller would run: in its namespace (the management bridge is there).
    proc = subprocess.Popen(control_ns.exec_argv(
                            [sys.executable, "-c", STAND_IN, str(ref.config.bgp.asn), ref.config.controller_address,
                             "198.19.0.11", "64501", str(edge1.internet_ipv4.ip), str(edge1.internet_ipv6.ip)]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: bgp_states(up1).get("msp") == "Established" or proc.poll() is not None, 30,
                 interval=0.2, what="up1's session with the stand-in speaker")
        assert proc.poll() is None, proc.stdout.read()

        def learned(node, prefix, via):
            route = best_route(node, prefix, exact=True)
            return route if route is not None and route.via == via else None

        for prefix, hop in ((PI4, "198.18.20.2"), (PI6, "2001:db8:ff20::2")):
            route = wait_for(lambda p=prefix, h=hop: learned(up1, p, h), 20, what=f"up1 to learn {prefix}")
            assert route.protocol == "msp" and route.as_path == (65000,) and route.interface == "up1-edge1"
            assert route.attributes["BGP.local_pref"] == "200"  # the customer's routes win
        for prefix, hop in ((PI4, "198.18.201.2"), (PI6, "2001:db8:f201::2")):
            route = wait_for(lambda p=prefix, h=hop: learned(inet, p, h), 20, what=f"inet to learn {prefix} from up1")
            assert route.as_path == (64501, 65000) and route.primary
        # up2 hears of them only through inet.
        route = wait_for(lambda: learned(up2, PI4, "198.18.202.1"), 20, what="up2 to learn the prefix via inet")
        assert route.as_path == (64496, 64501, 65000)

        wait_for(lambda: "via 198.18.201.2" in run(["ip", "route", "show", PI4], inet), 15,
                 what="inet's kernel route to the IPv4 PI prefix")
        wait_for(lambda: "via 2001:db8:f201::2" in run(["ip", "-6", "route", "show", PI6], inet), 15,
                 what="inet's kernel route to the IPv6 PI prefix")
        assert "via 198.18.20.2 dev up1-edge1" in run(["ip", "route", "get", "198.51.100.10"], up1)
        assert "via 2001:db8:ff20::2 dev up1-edge1" in run(["ip", "-6", "route", "get", "2001:db8:100::10"], up1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # The speaker is gone: the routes go with it, everywhere.
    wait_for(lambda: best_route(inet, PI4, exact=True) is None and best_route(inet, PI6, exact=True) is None,
             20, what="inet to forget the PI prefixes")
    wait_for(lambda: run(["ip", "route", "show", PI4], inet).strip() == "", 15, what="inet's kernel route to go")
    # up2 heard of them through inet: its withdrawal comes one hop later.
    wait_for(lambda: best_route(up1, PI4, exact=True) is None and best_route(up2, PI4, exact=True) is None,
             10, what="up1 and up2 to forget the PI prefix")
    wait_for(lambda: bgp_states(up1)["msp"] != "Established", 10, what="up1's session to drop")


UNDERLAYS = (("mspmb", "br-ispA"), ("mspmb", "br-ispB"), ("edge1", "br-up"), ("edge2", "br-up"))
TUNNELS = (("mspmb", "edge1-ispA"), ("mspmb", "edge1-ispB"), ("mspmb", "edge2-ispA"), ("mspmb", "edge2-ispB"))
# What the controller would install at each edge for BFD: back out of the tunnel it came in.
# The edges' ports are flow-based: BFD goes back to whichever box sent it (here, by hand).
EDGE_BFD_RETURN = "priority=400,udp,tp_dst=3784,actions=move:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],in_port"


def _normal_flows(ref, on: bool, bridges=UNDERLAYS) -> None:
    for box, bridge in bridges:
        if on:
            ref[box].ofctl("add-flow", bridge, "priority=0,actions=NORMAL")
        elif "ovs-vswitchd" in ref[box].ovs_pids():
            ref[box].ofctl("del-flows", bridge)
    for edge in ("edge1", "edge2"):
        if on:
            ref[edge].ofctl("add-flow", "br-msp", EDGE_BFD_RETURN)
        elif "ovs-vswitchd" in ref[edge].ovs_pids():
            ref[edge].ofctl("del-flows", "br-msp")


def _bfd_states(ref) -> dict[str, str]:
    return {f"{box}/{port}": bfd_state(ref[box], port) for box, port in TUNNELS}


def test_underlay_bfd_and_faults_with_hand_installed_flows(ref):
    """With NORMAL flows on the underlay bridges (no controller) the tunnels to both edges
    come up, and the ISP faults and counters act on exactly one ISP."""
    mspmb = ref["mspmb"]
    isp_a, isp_b = ref["ispA"], ref["ispB"]
    _normal_flows(ref, True)
    try:
        for address in ("198.18.10.11", "198.18.10.12", "198.18.11.11", "198.18.11.12"):
            wait_ping(mspmb, address)

        # Which ISP carried it: 40 big pings to .11 go through ispA only.
        before_a, before_b = isp_counters(isp_a), isp_counters(isp_b)
        run(["ping", "-q", "-c40", "-i0.005", "-s1400", "-W1", "198.18.10.11"], mspmb)
        after_a, after_b = isp_counters(isp_a), isp_counters(isp_b)
        sent = 40 * 1400
        assert after_a["up"]["bytes"] - before_a["up"]["bytes"] >= sent
        assert after_a["down"]["bytes"] - before_a["down"]["bytes"] >= sent
        assert after_b["up"]["bytes"] - before_b["up"]["bytes"] < sent / 2

        wait_for(lambda: set(_bfd_states(ref).values()) == {"up"}, 15, what="BFD up on all tunnels")

        isp_blackhole(isp_a, True)
        isp_blackhole(isp_a, True)  # idempotent
        assert isp_faults(isp_a) == {"blackhole"}
        wait_for(lambda: bfd_state(mspmb, "edge1-ispA") == "down" and bfd_state(mspmb, "edge2-ispA") == "down",
                 10, what="BFD down over ispA")
        assert bfd_state(mspmb, "edge1-ispB") == "up" and bfd_state(mspmb, "edge2-ispB") == "up"
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
        _normal_flows(ref, False)


def test_edge_failures(ref):
    """stop_edge kills only the edge's ovs-vswitchd (its tunnels die, the other edge's live
    on), start_edge brings it back provisioned as before; cut_edge_underlay cuts an edge's
    underlay at inet."""
    mspmb, edge1 = ref["mspmb"], ref["edge1"]
    _normal_flows(ref, True)
    try:
        wait_for(lambda: set(_bfd_states(ref).values()) == {"up"}, 15, what="BFD up on all tunnels")
        before = edge1.ovs_pids()
        ports_before = set(edge1.vsctl("list-ports", "br-msp").split())

        stop_edge(ref, "edge1")
        stop_edge(ref, "edge1")  # idempotent
        assert not edge_running(ref, "edge1") and edge_running(ref, "edge2")
        assert not process_alive(before["ovs-vswitchd"], "ovs-vswitchd")
        assert edge1.ovs_pids() == {"ovsdb-server": before["ovsdb-server"]}  # the database stays
        wait_for(lambda: bfd_state(mspmb, "edge1-ispA") == "down" and bfd_state(mspmb, "edge1-ispB") == "down",
                 10, what="BFD down towards the stopped edge")
        assert bfd_state(mspmb, "edge2-ispA") == "up" and bfd_state(mspmb, "edge2-ispB") == "up"
        assert not succeeds(mspmb, "ping", "-c1", "-W1", "198.18.10.11")

        start_edge(ref, "edge1")
        after = edge1.ovs_pids()
        assert after["ovsdb-server"] == before["ovsdb-server"]
        assert after["ovs-vswitchd"] != before["ovs-vswitchd"]
        assert set(edge1.vsctl("list-ports", "br-msp").split()) == ports_before
        target = f"tcp:{ref.config.controller_address}:{ref.config.controller_port}"
        assert edge1.vsctl("get-controller", "br-msp").strip() == target
        up = run(["ip", "-4", "-o", "addr", "show", "dev", "br-up"], edge1)
        assert "198.18.10.11/24" in up and "198.18.10.12/24" in up
        assert "default via 198.18.10.1 dev br-up" in run(["ip", "route"], edge1)
        assert edge1.ofctl("dump-flows", "br-up").count("actions=") == 0  # flows died with it
        _normal_flows(ref, True, (("edge1", "br-up"),))
        wait_ping(mspmb, "198.18.10.11")
        wait_for(lambda: set(_bfd_states(ref).values()) == {"up"}, 15, what="BFD up again on all tunnels")

        cut_edge_underlay(ref, "edge2", True)
        cut_edge_underlay(ref, "edge2", True)  # idempotent
        assert "cut_edge2" in isp_faults(ref["inet"])
        wait_for(lambda: bfd_state(mspmb, "edge2-ispA") == "down" and bfd_state(mspmb, "edge2-ispB") == "down",
                 10, what="BFD down towards the cut edge")
        assert bfd_state(mspmb, "edge1-ispA") == "up" and edge_running(ref, "edge2")
        cut_edge_underlay(ref, "edge2", False)
        cut_edge_underlay(ref, "edge2", False)
        assert isp_faults(ref["inet"]) == set()
        wait_for(lambda: set(_bfd_states(ref).values()) == {"up"}, 15, what="BFD up after the cut")
        with pytest.raises(KeyError, match="no edge 'edge9'"):
            stop_edge(ref, "edge9")
    finally:
        if not edge_running(ref, "edge1"):
            start_edge(ref, "edge1")
        cut_edge_underlay(ref, "edge2", False)
        _normal_flows(ref, False)


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
        assert _iperf(edge, mspmb, "198.18.10.11") > 50e6  # crosses ISP A: a 100 Mbit/s access link
    finally:
        for box, bridge in flows:
            box.ofctl("del-flows", bridge)


def test_stop_leaves_nothing(ref):
    nodes = list(ref.net.hosts)
    namespaces = {netns(node.pid) for node in nodes} - {None}
    pids = [(pid, daemon) for box in ref.boxes.values() for daemon, pid in box.ovs_pids().items()]
    pids += [(router.bird_pid(), "bird") for router in ref.routers.values()]
    shells = [node.pid for node in nodes]
    dirs = [ref.box_dir(name) for name in ref.plan.boxes] + [r.bird_dir for r in ref.routers.values()]
    assert len(namespaces) == len(nodes) and len(pids) == 3 * 2 + 3
    assert all(pid is not None for pid, _ in pids)

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
    assert not control_ns.exists(), "the controller's namespace outlived the network that made it"
    for path in dirs + [os.path.join(ref.run_dir, "nodes")]:
        assert not os.path.exists(path), path
    assert os.listdir(ref.run_dir) == []
    assert leftovers(ref.plan, ref.run_dir) == []
