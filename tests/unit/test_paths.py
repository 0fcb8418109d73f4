"""Path planning: a pure function of config and port liveness."""
from __future__ import annotations

import dataclasses

from msp_controller.paths import TunnelPath, plan_homenet

HOME_DPID, EDGE_DPID = 0x101, 0xE1


def _liveness(**ports):
    names = {"home_A": (HOME_DPID, "edge1-ispA"), "home_B": (HOME_DPID, "edge1-ispB"),
             "edge_A": (EDGE_DPID, "hn1-ispA"), "edge_B": (EDGE_DPID, "hn1-ispB")}
    return {names[key]: value for key, value in ports.items()}


A = TunnelPath("home1", "ispA", "edge1")
B = TunnelPath("home1", "ispB", "edge1")


def test_all_live_follows_policy(config):
    plan = plan_homenet(config, config.homenet("home1"), _liveness(home_A=True, home_B=True, edge_A=True, edge_B=True))
    assert plan.egress == (A, B) and plan.ingress == (A, B)
    assert plan.active_egress == A and plan.live == {A, B}


def test_dead_at_either_end_moves_path_back(config):
    for dead_end in ("home_A", "edge_A"):
        ports = dict(home_A=True, home_B=True, edge_A=True, edge_B=True)
        ports[dead_end] = False
        plan = plan_homenet(config, config.homenet("home1"), _liveness(**ports))
        assert plan.egress == (B, A), dead_end
        assert plan.active_egress == B and plan.active_ingress == B


def test_unknown_end_is_not_treated_as_dead(config):
    plan = plan_homenet(config, config.homenet("home1"), _liveness(home_A=True, home_B=True))
    assert plan.active_egress == A and plan.live == {A, B}


def test_no_path_left(config):
    plan = plan_homenet(config, config.homenet("home1"), _liveness(home_A=False, home_B=False))
    assert plan.active_egress is None and plan.active_ingress is None
    assert plan.egress == (A, B)  # kept in policy order, so the data plane can recover alone


def test_ingress_and_egress_orders_are_independent(config):
    home = dataclasses.replace(config.homenet("home1"), ingress_order=("ispB", "ispA"))
    plan = plan_homenet(config, home, {})
    assert plan.egress == (A, B) and plan.ingress == (B, A)
