"""End to end: the controller (ryu-manager), real OVS boxes, Mininet, ping and iperf3.

One network and controller for the module; tests run in file order and each leaves the
network as it found it (ISP A forwarding, traffic on ISP A).
"""
from __future__ import annotations

import re
import time

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS
pytest.importorskip("mininet")

from topologies.controller import Controller, wait_for
from topologies.faults import isp_blackhole
from topologies.measure import H1_4, H1_6, H2_4, SERVER4, SERVER6, TcpTransfer, UdpStream, ping, wait_reachable
from topologies.ovsbox import run
from topologies.scenario import REFERENCE_CONFIG, carries_traffic, isp_failure, wait_path

SWITCHES = 7  # br-home, br-ispA, br-ispB, and br-msp + br-up at each of the two edges


def test_both_families_both_ways(msp):
    net, _ = msp
    for source, destination in (("h1", SERVER4), ("h1", SERVER6), ("server", H1_4), ("server", H1_6),
                                ("h2", SERVER4), ("h1", H2_4)):
        assert wait_reachable(net[source], destination, timeout=10) is not None, (source, destination)


def test_traffic_takes_isp_a_by_policy(msp):
    net, _ = msp
    wait_path(net, "ispA")
    assert not carries_traffic(net, "ispB")


def test_tcp_transfer_works(msp):
    net, _ = msp
    transfer = TcpTransfer(net["h1"], net["server"], SERVER4, seconds=2, port=5301)
    transfer.start()
    result = transfer.result()
    assert result.survived and result.bytes_sent > 1_000_000, result


def test_failover_keeps_tcp_alive_and_fails_back(msp):
    net, _ = msp
    wait_path(net, "ispA")
    result = isp_failure(net, "ispA", seconds=5, fail_at=2)
    try:
        assert result.tcp.survived, result.tcp
        for stream in (result.up, result.down):
            # Traffic went on after the failure: well over half the packets arrived.
            assert stream.received > stream.sent * 0.6, stream
        assert carries_traffic(net, "ispB") and not carries_traffic(net, "ispA")
    finally:
        isp_blackhole(net["ispA"], False)
    wait_path(net, "ispA")  # failback
    assert not carries_traffic(net, "ispB")


def test_spoofed_source_never_leaves_the_homenet(msp):
    net, _ = msp
    server, h1 = net["server"], net["h1"]
    spoofed = "198.51.101.5"
    run(["nft", "-f", "-"], server, input=(
        "table inet spooftest {\n  counter seen { }\n  chain input {\n"
        "    type filter hook prerouting priority 0; policy accept;\n"
        f"    ip saddr {spoofed} counter name \"seen\"\n  }}\n}}\n"))
    try:
        run(["ip", "addr", "add", f"{spoofed}/32", "dev", "h1-eth0"], h1)
        h1.cmd(f"ping -n -c 5 -i 0.2 -W 1 -I {spoofed} {SERVER4}")
        assert ping(h1, SERVER4) is not None  # the real address still works
        listing = run(["nft", "list", "counter", "inet", "spooftest", "seen"], server)
        assert re.search(r"packets 0 ", listing), listing
    finally:
        h1.cmd(f"ip addr del {spoofed}/32 dev h1-eth0")
        server.cmd("nft delete table inet spooftest")


def _flows(box, bridge: str) -> dict[str, float]:
    """cookie+match -> duration (s) of every flow on a bridge."""
    flows = {}
    for line in box.ofctl("dump-flows", bridge).splitlines():
        cookie = re.search(r"cookie=(0x[0-9a-f]+)", line)
        duration = re.search(r"duration=([\d.]+)s", line)
        if cookie and duration:
            key = re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^ ,]+,? ?", "", line).strip()
            flows[key] = float(duration.group(1))
    return flows


def test_controller_restart_interrupts_nothing(msp):
    net, controller = msp
    wait_path(net, "ispA")
    boxes = ((net["mspmb"], "br-home"), (net["edge1"], "br-msp"))
    before = {bridge: _flows(box, bridge) for box, bridge in boxes}
    reconciled_before = controller.log_text().count("reconciled:")
    up = UdpStream(net["h1"], net["server"], SERVER4, 5401, seconds=6)
    down = UdpStream(net["server"], net["h1"], H1_4, 5402, seconds=6)
    up.start()
    down.start()
    stopped_at = time.monotonic()
    controller.stop()
    controller.start()
    wait_for(lambda: controller.log_text().count("reconciled:") >= reconciled_before + SWITCHES, 30,
             what="every switch to be reconciled after the restart")
    results = (up.result(), down.result())
    for stream in results:
        assert stream.lost == 0, stream
    elapsed = time.monotonic() - stopped_at
    for box, bridge in boxes:
        after = _flows(box, bridge)
        assert set(after) == set(before[bridge]), f"{bridge}: flows changed across the restart"
        for key, duration in before[bridge].items():
            assert after[key] >= duration + elapsed - 1, f"{bridge}: flow was re-created: {key}"
    assert "reconciled: 0 messages" in controller.log_text().split("instantiating app msp_controller.app")[-1]


def test_bad_config_stops_the_controller_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(REFERENCE_CONFIG.read_text().replace('egress_order = ["ispA", "ispB"]',
                                                        'egress_order = ["ispA", "ispC"]'))
    controller = Controller(bad, tmp_path / "controller.log", port=6699, rest_port=8099)
    with pytest.raises(RuntimeError) as caught:
        controller.start()
    assert "homenets[0].egress_order[1]: unknown ISP 'ispC'" in str(caught.value)
    controller.stop()
