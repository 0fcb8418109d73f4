"""Path planning: a pure function of config, port liveness and which edges are connected."""
from __future__ import annotations

import dataclasses

from msp_controller.decide.paths import TunnelPath, plan_homenet

HOME_DPID, EDGE1_DPID, EDGE2_DPID = 0x101, 0xE1, 0xE3
ENDS = {  # path -> (MSPMB port, edge dpid, edge port)
    ("ispA", "edge1"): ("edge1-ispA", EDGE1_DPID), ("ispB", "edge1"): ("edge1-ispB", EDGE1_DPID),
    ("ispA", "edge2"): ("edge2-ispA", EDGE2_DPID), ("ispB", "edge2"): ("edge2-ispB", EDGE2_DPID),
}
A1, B1 = TunnelPath("home1", "ispA", "edge1"), TunnelPath("home1", "ispB", "edge1")
A2, B2 = TunnelPath("home1", "ispA", "edge2"), TunnelPath("home1", "ispB", "edge2")


def liveness(dead_home=(), dead_edge=(), unknown=()):
    """Every tunnel end live except those named (as (isp, edge) pairs)."""
    ports = {}
    for (isp, edge), (home_port, edge_dpid) in ENDS.items():
        if (isp, edge) in unknown:
            continue
        ports[(HOME_DPID, home_port)] = (isp, edge) not in dead_home
        ports[(edge_dpid, f"hn1-{isp}")] = (isp, edge) not in dead_edge
    return ports


def test_all_live_prefers_primary_edge_then_isp_order(config):
    plan = plan_homenet(config, config.homenet("home1"), liveness())
    assert plan.egress == (A1, B1, A2, B2) and plan.ingress == (A1, B1, A2, B2)
    assert plan.active_egress == A1 and plan.live == {A1, B1, A2, B2}


def test_dead_at_either_end_moves_the_path_back(config):
    for dead in ({"dead_home": [("ispA", "edge1")]}, {"dead_edge": [("ispA", "edge1")]}):
        plan = plan_homenet(config, config.homenet("home1"), liveness(**dead))
        assert plan.egress == (B1, A2, B2, A1), dead
        assert plan.active_egress == B1 and plan.active_ingress == B1


def test_unknown_end_is_not_treated_as_dead(config):
    plan = plan_homenet(config, config.homenet("home1"), liveness(unknown=[("ispA", "edge1")]))
    assert plan.active_egress == A1 and A1 in plan.live


def test_edge_not_connected_is_not_used(config):
    plan = plan_homenet(config, config.homenet("home1"), liveness(), edges_up={"edge1": False, "edge2": True})
    assert plan.egress == (A2, B2, A1, B1) and plan.live == {A2, B2}


def test_no_path_left(config):
    every = list(ENDS)
    plan = plan_homenet(config, config.homenet("home1"), liveness(dead_home=every))
    assert plan.active_egress is None and plan.active_ingress is None
    assert plan.egress == (A1, B1, A2, B2)  # kept in order, so the data plane can recover alone


def test_ingress_and_egress_orders_are_independent(config):
    home = dataclasses.replace(config.homenet("home1"), ingress_order=("ispB", "ispA"))
    plan = plan_homenet(config, home, {})
    assert plan.egress == (A1, B1, A2, B2) and plan.ingress == (B1, A1, B2, A2)


def test_edge_preference_follows_config(config):
    home = dataclasses.replace(config.homenet("home1"), edges=("edge2", "edge1"))
    plan = plan_homenet(config, home, {})
    assert plan.egress == (A2, B2, A1, B1)
