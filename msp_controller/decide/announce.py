"""Where the MSP announces each homenet's PI prefixes by BGP, and how.

An edge announces a homenet's prefixes when it can deliver to it: its switch is
connected and at least one of its tunnels to the homenet is live (or no edge has a live
tunnel at all: then nothing is better, and the homenet must not wait for BGP when it
comes back). The primary edge announces a plain AS path, the others prepend our AS so the
Internet prefers the primary. A withdrawal is immediate; announcing again after a
withdrawal waits until the edge has been fit for hold_down_s, so a flapping tunnel does
not flap the Internet's routes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from msp_controller.decide.paths import PathPlan
from msp_controller.model.config import Edge, Homenet


@dataclass(frozen=True)
class Route:
    next_hop: str
    prepend: int = 0


Desired = dict[str, dict[str, Route]]  # neighbor address -> prefix -> route


def edge_can_serve(homenet: Homenet, edge: str, plan: PathPlan, edges_up: Mapping[str, bool],
                   ever_reached: bool = True) -> bool:
    """Would traffic for the homenet that arrives at this edge reach it?

    ever_reached: has any tunnel of the homenet been up (since this controller started)? A
    homenet that has never been reached is not promised to the Internet at all."""
    if not edges_up.get(edge, False):
        return False
    if any(path.edge == edge for path in plan.live):
        return True
    # No edge reaches the homenet: keep announcing where the switch is up, so that traffic
    # flows the moment a tunnel comes back.
    return ever_reached and not any(edges_up.get(path.edge, False) for path in plan.live)


def routes_at(homenet: Homenet, edge: Edge) -> dict[str, Route]:
    prepend = 0 if edge.name == homenet.edges[0] else homenet.backup_prepend
    routes = {}
    for prefix in homenet.prefixes:
        hop = edge.internet_ipv4 if prefix.version == 4 else edge.internet_ipv6
        if hop is not None:
            routes[str(prefix)] = Route(str(hop.ip), prepend)
    return routes


@dataclass
class HomenetAnnouncements:
    """Where one homenet's prefixes are announced, with the hold-down after a withdrawal.

    One per homenet, so that an event about a homenet decides its announcements alone."""

    hold_down_s: float
    announced: set[str] = field(default_factory=set)  # edge names
    ever_reached: bool = False  # a tunnel of it has been known up: announce from then on
    fit_since: dict[str, float] = field(default_factory=dict)
    withdrawn_at: dict[str, float] = field(default_factory=dict)

    def step(self, edge: str, fit: bool, now: float) -> bool:
        """Is the homenet announced at `edge` now, given whether the edge can serve it?"""
        if not fit:
            self.fit_since.pop(edge, None)
            if edge in self.announced:
                self.announced.discard(edge)
                self.withdrawn_at[edge] = now
            return False
        since = self.fit_since.setdefault(edge, now)
        if edge not in self.announced:
            if edge in self.withdrawn_at and now - max(since, self.withdrawn_at[edge]) < self.hold_down_s:
                return False
            self.announced.add(edge)
        return True

    def held_until(self, edge: str) -> float | None:
        """When a fit but held-down edge may announce again (for a timer)."""
        if edge in self.announced or edge not in self.fit_since or edge not in self.withdrawn_at:
            return None
        return max(self.fit_since[edge], self.withdrawn_at[edge]) + self.hold_down_s

    def update(self, homenet: Homenet, plan: PathPlan, edges_up: Mapping[str, bool], now: float) -> bool:
        """Step every edge of the homenet; True if the set of announcing edges changed."""
        before = set(self.announced)
        self.ever_reached = self.ever_reached or any(edges_up.get(path.edge, False) for path in plan.live)
        for edge in homenet.edges:
            self.step(edge, edge_can_serve(homenet, edge, plan, edges_up, self.ever_reached), now)
        return self.announced != before


def prefix_routes(homenet: Homenet, announcing: Iterable[Edge]) -> dict[str, dict[str, Route]]:
    """Each of the homenet's prefixes -> neighbor -> route, from the edges that announce it
    (a prefix no edge announces maps to {}: withdrawn everywhere)."""
    result: dict[str, dict[str, Route]] = {str(prefix): {} for prefix in homenet.prefixes}
    for edge in announcing:
        for prefix, route in routes_at(homenet, edge).items():
            for neighbor in edge.bgp_neighbors:
                result[prefix][str(neighbor.address)] = route
    return result
