"""Traffic classes and probes end to end: REST changes policy, ISP counters prove it.

The network's ISPs count, per direction, the tunnel packets carrying each test stream's
inner UDP port, so a test can say which ISP a class took without trusting the controller.
"""
from __future__ import annotations

import pytest

from tests.integration.conftest import NEEDS

pytestmark = NEEDS
pytest.importorskip("mininet")

from bench.common import api
from topologies.controller import wait_for
from topologies.faults import inner_udp_counts, isp_loss, unwatch_inner_udp, watch_inner_udp_port
from topologies.measure import H1_4, SERVER4, UdpStream, wait_reachable
from topologies.scenario import bfd_flap_counts, running, wait_all_bfd_up

VOICE_PORT, WEB_PORT, GAME_PORT = 20000, 8081, 27010
DEFAULT = {"egress": {"mode": "failover", "order": ["ispA", "ispB"]},
           "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}}
VOICE = {"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
         "egress": {"mode": "failover", "order": ["ispB", "ispA"]},
         "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}}
GAME = {"name": "gaming", "match": {"protocol": "udp", "dst_ports": ["27000-27100"]},
        "egress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 3},
        "ingress": {"mode": "sla", "order": ["ispA", "ispB"], "max_loss_pct": 5, "recover_s": 3}}


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("msp"))
    with running(run_dir) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        for isp in ("ispA", "ispB"):
            for port in (VOICE_PORT, WEB_PORT, GAME_PORT):
                watch_inner_udp_port(net[isp], port)
        yield net, controller
        for isp in ("ispA", "ispB"):
            unwatch_inner_udp(net[isp])


def both_ways(net, port: int, seconds: float = 1.5) -> dict[str, dict[str, int]]:
    """A stream each way on one UDP port; how many of its packets each ISP carried."""
    before = {isp: inner_udp_counts(net[isp], port) for isp in ("ispA", "ispB")}
    # One after the other: the server's receiver and its sender would both need the port.
    for stream in (UdpStream(net["h1"], net["server"], SERVER4, port, seconds, rate=200),
                   UdpStream(net["server"], net["h1"], H1_4, port + 1, seconds, rate=200, src_port=port)):
        stream.start()
        assert stream.result().received > 0
    after = {isp: inner_udp_counts(net[isp], port) for isp in ("ispA", "ispB")}
    return {isp: {d: after[isp][d] - before[isp][d] for d in ("up", "down")} for isp in after}


def steady_both_ways(net, port: int, seconds: float = 1.5, attempts: int = 6) -> dict[str, dict[str, int]]:
    """both_ways, measured again if a BFD session flapped meanwhile: a flap (30 ms BFD on a
    busy 2-core machine, or on a lossy ISP: at 10 % loss one way, measured, about one in
    13 s) moves traffic by design and says nothing about the policy under test. Each try
    starts with every session up (a session that went down takes a second or two to
    return)."""
    for _ in range(attempts):
        wait_all_bfd_up(net)
        flaps = bfd_flap_counts(net)
        counts = both_ways(net, port, seconds)
        if bfd_flap_counts(net) == flaps:
            return counts
    raise AssertionError(f"BFD flapped during each of {attempts} measurements")


def test_health_and_homenet_show_measured_paths(msp):
    net, controller = msp
    status, health = api(controller, "GET", "/api/v1/health")
    assert status == 200 and health["status"] == "ok"
    wait_for(lambda: all(p["rtt_ms"] is not None and p["live"]
                         for p in api(controller, "GET", "/api/v1/homenets/home1")[1]["paths"]),
             15, what="every path live (BFD) with an RTT estimate")
    status, home = api(controller, "GET", "/api/v1/homenets/home1")
    assert status == 200
    assert {p["isp"] for p in home["paths"]} == {"ispA", "ispB"} and all(p["live"] for p in home["paths"])
    assert all(p["rtt_ms"] < 100 and p["probes"] > 0 for p in home["paths"]), home["paths"]
    # Probes sent before BFD brought a tunnel up were lost; once they leave the window: 0 %.
    wait_for(lambda: all(p["loss_pct"] == 0 for p in api(controller, "GET", "/api/v1/homenets/home1")[1]["paths"]),
             15, what="no probe loss on healthy paths")
    assert api(controller, "GET", "/api/v1/homenets/nohome")[0] == 404


def test_voice_class_takes_isp_b_both_ways_while_the_rest_takes_a(msp):
    net, controller = msp
    status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy", {"classes": [VOICE], "default": DEFAULT})
    assert status == 200 and answer["applied"] is True, answer
    voice = steady_both_ways(net, VOICE_PORT)
    web = steady_both_ways(net, WEB_PORT)
    assert voice["ispB"]["up"] > 250 and voice["ispB"]["down"] > 250 and voice["ispA"] == {"up": 0, "down": 0}, voice
    assert web["ispA"]["up"] > 250 and web["ispA"]["down"] > 250 and web["ispB"] == {"up": 0, "down": 0}, web
    status, home = api(controller, "GET", "/api/v1/homenets/home1")
    classes = {c["name"]: c for c in home["classes"]}
    assert classes["voice"]["egress"] == "ispB@edge1" and classes["default"]["egress"] == "ispA@edge1"


def test_bad_policy_is_refused_and_changes_nothing(msp):
    net, controller = msp
    before = api(controller, "GET", "/api/v1/homenets/home1/policy")[1]
    flows_before = net["mspmb"].ofctl("dump-flows", "br-home", "--no-stats")
    for body, where in (({"classes": [dict(VOICE, egress={"mode": "failover", "order": ["ispC"]})], "default": DEFAULT},
                         "classes[0].egress.order[0]"),
                        ({"classes": [VOICE, dict(VOICE, name="voice2")], "default": DEFAULT}, "classes[1].match"),
                        ({"classes": []}, "default")):
        status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy", body)
        assert status == 400 and answer["error"]["where"] == where, answer
    assert api(controller, "PUT", "/api/v1/homenets/home1/policy", b"{not json")[0] == 400
    assert api(controller, "GET", "/api/v1/homenets/home1/policy")[1] == before
    assert net["mspmb"].ofctl("dump-flows", "br-home", "--no-stats") == flows_before
    voice = steady_both_ways(net, VOICE_PORT, seconds=1)
    assert voice["ispB"]["up"] > 100 and voice["ispA"]["up"] == 0


def test_sla_class_leaves_a_degraded_isp_and_returns_while_failover_stays(msp):
    net, controller = msp
    # Damping off: 10 % loss one way still drops three BFD packets in a row now and then
    # (about once in 30 s), and damping would then keep every class off ISP A for seconds.
    # This test is about which classes the probes move; damping has tests of its own.
    status, answer = api(controller, "PUT", "/api/v1/homenets/home1/policy",
                         {"classes": [GAME], "default": DEFAULT, "damping": {"max_hold_s": 0}})
    assert status == 200 and answer["applied"], answer

    def game_egress() -> str:
        classes = api(controller, "GET", "/api/v1/homenets/home1")[1]["classes"]
        return next(c["egress"] for c in classes if c["name"] == "gaming")

    # Start from a clean measurement: every path live with no probe loss in its window.
    wait_for(lambda: all(p["live"] and p["loss_pct"] == 0
                         for p in api(controller, "GET", "/api/v1/homenets/home1")[1]["paths"])
             and game_egress() == "ispA@edge1", 30, interval=0.2, what="gaming on a clean ISP A")
    assert steady_both_ways(net, GAME_PORT, seconds=1)["ispA"]["up"] > 100

    def judged_lossy() -> bool:
        path_a = next(p for p in api(controller, "GET", "/api/v1/homenets/home1")[1]["paths"]
                      if p["isp"] == "ispA" and p["edge"] == "edge1")
        return path_a["loss_pct"] is not None and path_a["loss_pct"] > 5

    # 10 % one way: well over the class's 5 %, and BFD (3 x 30 ms) flaps only now and then
    # (about once in 13 s, measured; steady_both_ways measures again when it does), so it
    # is the probes, not BFD, that move the class.
    isp_loss(net["ispA"], 10, direction="down")
    try:
        wait_for(lambda: judged_lossy() and game_egress() == "ispB@edge1", 15, interval=0.2,
                 what="the probes to find ISP A lossy and gaming to leave it")
        game = steady_both_ways(net, GAME_PORT, seconds=1)
        assert game["ispB"]["up"] > 100 and game["ispA"]["up"] == 0, game
        web = steady_both_ways(net, WEB_PORT, seconds=1)
        assert web["ispA"]["up"] > 100 and web["ispB"]["up"] == 0, web  # failover class stays
    finally:
        isp_loss(net["ispA"], 0)
    wait_for(lambda: game_egress() == "ispA@edge1", 20, interval=0.2, what="gaming to come back after hysteresis")
