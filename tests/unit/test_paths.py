"""Path planning: a pure function of config, port liveness and which edges are connected."""
from __future__ import annotations

import dataclasses

from msp_controller.decide.choice import EGRESS, INGRESS, choose
from msp_controller.decide.paths import PathPlan, TunnelPath, plan_homenet
from msp_controller.model.config import Homenet
from msp_controller.model.policy import default_policy

HOME_DPID, EDGE1_DPID, EDGE2_DPID = 0x101, 0xE1, 0xE3
ENDS = {  # path -> (MSPMB port, edge dpid, edge port)
    ("ispA", "edge1"): ("edge1-ispA", EDGE1_DPID), ("ispB", "edge1"): ("edge1-ispB", EDGE1_DPID),
    ("ispA", "edge2"): ("edge2-ispA", EDGE2_DPID), ("ispB", "edge2"): ("edge2-ispB", EDGE2_DPID),
}
A1, B1 = TunnelPath("home1", "ispA", "edge1"), TunnelPath("home1", "ispB", "edge1")
A2, B2 = TunnelPath("home1", "ispA", "edge2"), TunnelPath("home1", "ispB", "edge2")


SLOTS = {"ispA": 0, "ispB": 1}  # the edge's shared tunnel port for each uplink's slot


def liveness(dead_home=(), dead_edge=(), unknown=()):
    """Every tunnel end live except those named (as (isp, edge) pairs)."""
    ports = {}
    for (isp, edge), (home_port, edge_dpid) in ENDS.items():
        if (isp, edge) in unknown:
            continue
        ports[(HOME_DPID, home_port)] = (isp, edge) not in dead_home
        ports[(edge_dpid, f"vxlan-slot{SLOTS[isp]}")] = (isp, edge) not in dead_edge
    return ports


def order(home: Homenet, plan: PathPlan, direction: str = EGRESS) -> tuple[TunnelPath, ...]:
    """The default class's bucket order: the one ordering of paths (decide/choice.py)."""
    return choose(default_policy(home), plan, direction, lambda *_: True)[0].paths


def active(home: Homenet, plan: PathPlan, direction: str = EGRESS) -> TunnelPath | None:
    chosen = choose(default_policy(home), plan, direction, lambda *_: True)[0].active
    return chosen[0] if chosen else None


def test_all_live_prefers_primary_edge_then_isp_order(config):
    home = config.homenet("home1")
    plan = plan_homenet(config, home, liveness())
    assert order(home, plan) == (A1, B1, A2, B2) and order(home, plan, INGRESS) == (A1, B1, A2, B2)
    assert active(home, plan) == A1 and plan.live == {A1, B1, A2, B2}


def test_dead_at_either_end_moves_the_path_back(config):
    for dead in ({"dead_home": [("ispA", "edge1")]}, {"dead_edge": [("ispA", "edge1")]}):
        home = config.homenet("home1")
        plan = plan_homenet(config, home, liveness(**dead))
        assert order(home, plan) == (B1, A2, B2, A1), dead
        assert active(home, plan) == B1 and active(home, plan, INGRESS) == B1


def test_unknown_end_is_not_treated_as_dead(config):
    home = config.homenet("home1")
    plan = plan_homenet(config, home, liveness(unknown=[("ispA", "edge1")]))
    assert active(home, plan) == A1 and A1 in plan.live and A1 not in plan.known_live


def test_edge_not_connected_is_not_used(config):
    home = config.homenet("home1")
    plan = plan_homenet(config, home, liveness(), edges_up={"edge1": False, "edge2": True})
    assert order(home, plan) == (A2, B2, A1, B1) and plan.live == {A2, B2}


def test_no_path_left(config):
    every = list(ENDS)
    home = config.homenet("home1")
    plan = plan_homenet(config, home, liveness(dead_home=every))
    assert active(home, plan) is None and active(home, plan, INGRESS) is None
    assert order(home, plan) == (A1, B1, A2, B2)  # kept in order, so the data plane can recover alone


def test_ingress_and_egress_orders_are_independent(config):
    home = dataclasses.replace(config.homenet("home1"), ingress_order=("ispB", "ispA"))
    plan = plan_homenet(config, home, {})
    assert order(home, plan) == (A1, B1, A2, B2) and order(home, plan, INGRESS) == (B1, A1, B2, A2)


def test_edge_preference_follows_config(config):
    home = dataclasses.replace(config.homenet("home1"), edges=("edge2", "edge1"))
    plan = plan_homenet(config, home, {})
    assert order(home, plan) == (A2, B2, A1, B1)
