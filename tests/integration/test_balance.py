"""Policy modes under failure on the real switches: balance spreads UDP and TCP flows by
their 5-tuple, and an edge the controller does not prefer still delivers what the
Internet sends it. nftables counters in the ISPs (by h1's inner port, the one port that
differs between the flows, as with many connections to one server) say which ISP carried
each flow.
"""
from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS
pytest.importorskip("mininet")

from bench.common import api
from topologies.bird import best_route, birdc
from topologies.controller import wait_for
from topologies.faults import INNER_UDP_DST_BITS, INNER_UDP_SRC_BITS
from topologies.measure import H1_4, PYTHON, SERVER4, UdpStream
from topologies.ovsbox import run

FLOWS = 16
SERVER_PORT = 5001
UDP_PORTS = range(41000, 41000 + FLOWS)  # h1's port of each flow
TCP_PORTS = range(42000, 42000 + FLOWS)
WEIGHTED_PORTS = range(43000, 43000 + FLOWS)
TABLE = "msp_balance_test"
ISPS = ("ispA", "ispB")
MODES = {"failover": {"mode": "failover", "order": ["ispA", "ispB"]},
         "balance": {"mode": "balance", "weights": {"ispA": 1, "ispB": 1}},
         "sla": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5}}

UDP_SEND = """
import socket, sys, time
destination, count = sys.argv[1], int(sys.argv[2])
bound, sockets = {}, []
for pair in sys.argv[3:]:
    local, remote = map(int, pair.split(":"))
    if local not in bound:
        bound[local] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bound[local].bind(("", local))
    sockets.append((bound[local], remote))
for _ in range(count):
    for sock, remote in sockets:
        sock.sendto(b"m" * 64, (destination, remote))
    time.sleep(0.01)
"""
TCP_ECHO = """
import socket, sys, threading
def serve(conn):
    while data := conn.recv(4096):
        conn.sendall(data)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("", int(sys.argv[1])))
listener.listen(64)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    threading.Thread(target=serve, args=(listener.accept()[0],)).start()
"""
TCP_CLIENT = """
import socket, sys
destination = sys.argv[1]
for pair in sys.argv[2:]:
    local, remote = map(int, pair.split(":"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", local))
    sock.connect((destination, remote))
    for _ in range(20):
        sock.sendall(b"m" * 100)
        assert len(sock.recv(4096)) > 0
    sock.close()
"""


def _watch(node, ports: range) -> None:
    """Count, per h1 port, the tunnel packets carrying it: inner source going up, inner
    destination coming down (inner IPv4 with TCP or UDP: the ports sit at the same place)."""
    customer = node.customer_intf
    lines = [f"add table inet {TABLE}",
             f"add chain inet {TABLE} count {{ type filter hook forward priority 20; policy accept; }}"]
    for port in ports:
        lines += [f"add counter inet {TABLE} up{port}", f"add counter inet {TABLE} down{port}",
                  f'add rule inet {TABLE} count iifname "{customer}" udp dport 4789 '
                  f'@th,{INNER_UDP_SRC_BITS},16 {port} counter name "up{port}"',
                  f'add rule inet {TABLE} count oifname "{customer}" udp dport 4789 '
                  f'@th,{INNER_UDP_DST_BITS},16 {port} counter name "down{port}"']
    run(["nft", "-f", "-"], node, input="\n".join(lines) + "\n")


def _port_counts(node) -> dict[str, int]:
    listing = json.loads(run(["nft", "-j", "list", "counters", "table", "inet", TABLE], node))
    return {item["counter"]["name"]: int(item["counter"]["packets"])
            for item in listing["nftables"] if "counter" in item}


@pytest.fixture(scope="module")
def watched(msp):
    net, controller = msp
    for isp in ISPS:
        _watch(net[isp], range(UDP_PORTS.start, WEIGHTED_PORTS.stop))
    yield net, controller
    for isp in ISPS:
        run(["nft", "delete", "table", "inet", TABLE], net[isp], check=False)
    api(controller, "PUT", "/api/v1/homenets/home1/policy", {"classes": [], "default": {
        "egress": MODES["failover"], "ingress": MODES["failover"]}})


def _put_default(net, controller, direction: dict[str, Any]) -> None:
    status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy",
                         {"classes": [], "default": {"egress": direction, "ingress": direction}})
    assert status == 200 and answer["applied"] is True, answer
    if direction["mode"] == "balance":
        weights = list(direction["weights"].values())
        links = f"hrw,{sum(weights) // math.gcd(*weights)},"  # as ovs-ofctl shows multipath
        wait_for(lambda: links in net["mspmb"].ofctl("dump-flows", "br-home", "table=1")
                 and links in net["edge1"].ofctl("dump-flows", "br-msp", "table=2"),
                 10, what="the new balance flows at the MSPMB and edge1")


def _counts(net) -> dict[str, dict[str, int]]:
    return {isp: _port_counts(net[isp]) for isp in ISPS}


def _placement(before, after, ports: range, direction: str) -> dict[int, str]:
    """Which ISP carried each flow in one direction; a flow split over both fails."""
    placed = {}
    for port in ports:
        name = f"{direction}{port}"
        carried = {isp: after[isp][name] - before[isp][name] for isp in ISPS}
        used = [isp for isp, packets in carried.items() if packets > 0]
        assert len(used) == 1, f"flow {port} {direction}: {carried}"
        placed[port] = used[0]
    return placed


def _run(host, script: str, *args: str, timeout: float = 30) -> None:
    process = host.popen([PYTHON, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode(errors="replace")


def _udp_both_ways(net, ports: range) -> tuple[dict[int, str], dict[int, str]]:
    before = _counts(net)
    _run(net["h1"], UDP_SEND, SERVER4, "20", *(f"{port}:{SERVER_PORT}" for port in ports))
    # The replies: from the server's port (bound once) to each of h1's ports.
    _run(net["server"], UDP_SEND, H1_4, "20", *(f"{SERVER_PORT}:{port}" for port in ports))
    after = _counts(net)
    return _placement(before, after, ports, "up"), _placement(before, after, ports, "down")


def _report(what: str, placed: dict[int, str]) -> Counter[str]:
    split = Counter(placed.values())
    print(f"{what}: ispA {split['ispA']}, ispB {split['ispB']}")
    return split


def test_balance_spreads_16_udp_flows_both_ways(watched):
    net, controller = watched
    _put_default(net, controller, MODES["balance"])
    up, down = _udp_both_ways(net, UDP_PORTS)
    for what, placed in (("UDP up", up), ("UDP down", down)):
        split = _report(what, placed)
        assert min(split["ispA"], split["ispB"]) >= 6, (what, split)  # no worse than 10:6


def test_balance_spreads_16_tcp_connections_both_ways(watched):
    net, controller = watched
    _put_default(net, controller, MODES["balance"])
    before = _counts(net)
    server = net["server"].popen([PYTHON, "-c", TCP_ECHO, str(SERVER_PORT + 1), str(FLOWS)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        _run(net["h1"], TCP_CLIENT, SERVER4, *(f"{port}:{SERVER_PORT + 1}" for port in TCP_PORTS))
    finally:
        server.kill()
        server.wait()
    after = _counts(net)
    for direction in ("up", "down"):
        split = _report(f"TCP {direction}", _placement(before, after, TCP_PORTS, direction))
        assert min(split["ispA"], split["ispB"]) >= 6, (direction, split)


def test_balance_follows_weights(watched):
    net, controller = watched
    _put_default(net, controller, {"mode": "balance", "weights": {"ispA": 3, "ispB": 1}})
    up, down = _udp_both_ways(net, WEIGHTED_PORTS)
    for what, placed in (("UDP 3:1 up", up), ("UDP 3:1 down", down)):
        split = _report(what, placed)
        assert split["ispA"] > split["ispB"] >= 1, (what, split)


def _core_route(net) -> str | None:
    route = best_route(net["inet"], "198.51.100.0/24")
    return route.protocol if route else None


@pytest.mark.parametrize("mode", sorted(MODES))
def test_edge2_delivers_while_edge1_is_preferred(watched, mode):
    """The core stops hearing the PI prefix from up1 (edge1's announcement withdrawn there):
    the Internet sends the homenet's traffic to edge2 while the controller still prefers
    edge1; edge2 delivers every packet."""
    net, controller = watched
    _put_default(net, controller, MODES[mode])
    birdc(net["inet"], "disable", "up1_v4")
    try:
        wait_for(lambda: _core_route(net) == "up2_v4", 15, what="the core to route the homenet to up2/edge2")

        def egress() -> str:
            home = api(controller, "GET", "/api/v1/homenets/home1")[1]
            return next(c for c in home["classes"] if c["name"] == "default")["egress"] or ""

        # The controller still prefers edge1. A CPU stall of 90 ms on this machine drops edge1's
        # BFD (30 ms x 3) and damps its paths for 2 s (a CI run saw both go at once): wait
        # that out rather than read one moment.
        wait_for(lambda: "edge1" in egress(), 15, what="the controller to prefer edge1")
        stream = UdpStream(net["server"], net["h1"], H1_4, 33000, 1.5, rate=200)
        stream.start()
        result = stream.result()
        print(f"{mode}: server -> h1 through edge2: {result.received} of {result.sent} received")
        assert result.sent > 250 and result.lost == 0, result
    finally:
        birdc(net["inet"], "enable", "up1_v4")
        wait_for(lambda: _core_route(net) == "up1_v4", 30, what="the core to route the homenet to up1 again")
