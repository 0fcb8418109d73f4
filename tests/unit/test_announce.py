"""Which prefixes the MSP announces at which edge, for a given liveness (pure)."""
from __future__ import annotations

from msp_controller.decide.announce import HomenetAnnouncements, Route, prefix_routes
from msp_controller.decide.paths import plan_all
from tests.unit.test_paths import liveness

UP1, UP2 = "198.19.0.11", "198.19.0.12"
V4, V6 = "198.51.100.0/24", "2001:db8:100::/48"
BOTH_UP = {"edge1": True, "edge2": True}


class AnnouncementPlanner:
    """Every homenet's announcements, per neighbor: what the BGP speaker is told."""

    def __init__(self, config):
        self.config = config
        self.homenets = {h.name: HomenetAnnouncements(config.bgp.hold_down_s) for h in config.homenets}

    def plan(self, plans, edges_up, now):
        desired = {str(n.address): {} for e in self.config.edges for n in e.bgp_neighbors}
        for homenet in self.config.homenets:
            state = self.homenets[homenet.name]
            state.update(homenet, plans[homenet.name], edges_up, now)
            announcing = [self.config.edge(e) for e in homenet.edges if e in state.announced]
            for prefix, routes in prefix_routes(homenet, announcing).items():
                for neighbor, route in routes.items():
                    desired[neighbor][prefix] = route
        return desired

    def next_change_at(self):
        times = [t for h in self.config.homenets for e in h.edges
                 if (t := self.homenets[h.name].held_until(e)) is not None]
        return min(times, default=None)


def _plan(planner, config, now, edges_up=BOTH_UP, **ports):
    return planner.plan(plan_all(config, liveness(**ports), edges_up), edges_up, now)


def test_both_edges_announce_and_the_backup_prepends(config):
    desired = _plan(AnnouncementPlanner(config), config, 0.0)
    assert desired[UP1] == {V4: Route("198.18.20.2", 0), V6: Route("2001:db8:ff20::2", 0)}
    assert desired[UP2] == {V4: Route("198.18.21.2", 2), V6: Route("2001:db8:ff21::2", 2)}


def test_edge_that_lost_every_tunnel_withdraws(config):
    dead = [("ispA", "edge1"), ("ispB", "edge1")]
    desired = _plan(AnnouncementPlanner(config), config, 0.0, dead_edge=dead)
    assert desired[UP1] == {} and set(desired[UP2]) == {V4, V6}


def test_one_tunnel_left_is_enough(config):
    desired = _plan(AnnouncementPlanner(config), config, 0.0, dead_home=[("ispA", "edge1")])
    assert set(desired[UP1]) == {V4, V6}


def test_disconnected_edge_withdraws(config):
    edges_up = {"edge1": False, "edge2": True}
    desired = _plan(AnnouncementPlanner(config), config, 0.0, edges_up=edges_up)
    assert desired[UP1] == {} and set(desired[UP2]) == {V4, V6}


def test_homenet_with_no_live_path_stays_announced_where_switches_are_up(config):
    every = [("ispA", "edge1"), ("ispB", "edge1"), ("ispA", "edge2"), ("ispB", "edge2")]
    planner = AnnouncementPlanner(config)
    _plan(planner, config, 0.0)  # it has been reached
    desired = _plan(planner, config, 1.0, dead_home=every)
    assert set(desired[UP1]) == {V4, V6} and set(desired[UP2]) == {V4, V6}
    # ...but not where the switch itself is gone.
    desired = _plan(planner, config, 2.0, edges_up={"edge1": False, "edge2": True}, dead_home=every)
    assert desired[UP1] == {} and set(desired[UP2]) == {V4, V6}


def test_a_homenet_never_reached_is_not_announced(config):
    every = [("ispA", "edge1"), ("ispB", "edge1"), ("ispA", "edge2"), ("ispB", "edge2")]
    planner = AnnouncementPlanner(config)
    desired = _plan(planner, config, 0.0, dead_home=every)
    assert desired[UP1] == {} and desired[UP2] == {}
    desired = _plan(planner, config, 1.0, dead_home=every[1:])  # one tunnel to edge1 comes up
    assert set(desired[UP1]) == {V4, V6} and desired[UP2] == {}


def test_recovery_waits_for_the_hold_down_without_flapping(config):
    planner = AnnouncementPlanner(config)
    dead = [("ispA", "edge1"), ("ispB", "edge1")]
    assert set(_plan(planner, config, 0.0)[UP1]) == {V4, V6}
    assert _plan(planner, config, 1.0, dead_edge=dead)[UP1] == {}  # withdrawn at once
    assert _plan(planner, config, 2.0)[UP1] == {}  # healthy again, held down
    assert _plan(planner, config, 4.0, dead_edge=dead)[UP1] == {}  # flapped: the clock restarts
    assert _plan(planner, config, 5.0)[UP1] == {}
    assert planner.next_change_at() == 10.0
    assert _plan(planner, config, 9.9)[UP1] == {}
    assert set(_plan(planner, config, 10.0)[UP1]) == {V4, V6}  # hold_down_s = 5 after the last flap


def test_unknown_tunnel_ends_are_not_promised(config):
    """At start-up an edge whose tunnels nobody has reported yet is not preferred."""
    ports = liveness(unknown=[("ispA", "edge2"), ("ispB", "edge2")], dead_edge=[("ispA", "edge1")])
    plans = plan_all(config, ports, BOTH_UP, unknown_is_live=False)
    desired = AnnouncementPlanner(config).plan(plans, BOTH_UP, 0.0)
    assert set(desired[UP1]) == {V4, V6} and desired[UP2] == {}
