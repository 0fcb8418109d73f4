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

from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import Edge, Homenet, MspConfig
from .paths import PathPlan


@dataclass(frozen=True)
class Route:
    next_hop: str
    prepend: int = 0


Desired = dict[str, dict[str, Route]]  # neighbor address -> prefix -> route


def edge_can_serve(homenet: Homenet, edge: str, plan: PathPlan, edges_up: Mapping[str, bool]) -> bool:
    """Would traffic for the homenet that arrives at this edge reach it?"""
    if not edges_up.get(edge, False):
        return False
    if any(path.edge == edge for path in plan.live):
        return True
    # No edge reaches the homenet: keep announcing where the switch is up, so that traffic
    # flows the moment a tunnel comes back.
    return not any(edges_up.get(path.edge, False) for path in plan.live)


def routes_at(homenet: Homenet, edge: Edge) -> dict[str, Route]:
    prepend = 0 if edge.name == homenet.edges[0] else homenet.backup_prepend
    routes = {}
    for prefix in homenet.prefixes:
        hop = edge.internet_ipv4 if prefix.version == 4 else edge.internet_ipv6
        if hop is not None:
            routes[str(prefix)] = Route(str(hop.ip), prepend)
    return routes


@dataclass
class AnnouncementPlanner:
    config: MspConfig
    withdrawn_at: dict[tuple[str, str], float] = field(default_factory=dict)
    fit_since: dict[tuple[str, str], float] = field(default_factory=dict)
    announced: set[tuple[str, str]] = field(default_factory=set)

    def _announce(self, key: tuple[str, str], fit: bool, now: float) -> bool:
        if not fit:
            self.fit_since.pop(key, None)
            if key in self.announced:
                self.announced.discard(key)
                self.withdrawn_at[key] = now
            return False
        since = self.fit_since.setdefault(key, now)
        if key not in self.announced:
            hold_down = self.config.bgp.hold_down_s if self.config.bgp else 0.0
            if key in self.withdrawn_at and now - max(since, self.withdrawn_at[key]) < hold_down:
                return False
            self.announced.add(key)
        return True

    def plan(self, plans: Mapping[str, PathPlan], edges_up: Mapping[str, bool], now: float) -> Desired:
        desired: Desired = {neighbor: {} for edge in self.config.edges
                            for neighbor in (str(n.address) for n in edge.bgp_neighbors)}
        for homenet in self.config.homenets:
            for edge_name in homenet.edges:
                edge = self.config.edge(edge_name)
                fit = edge_can_serve(homenet, edge_name, plans[homenet.name], edges_up)
                if not self._announce((homenet.name, edge_name), fit, now):
                    continue
                for neighbor in edge.bgp_neighbors:
                    desired[str(neighbor.address)].update(routes_at(homenet, edge))
        return desired

    def next_change_at(self) -> float | None:
        """When a held-down edge may announce again (for a timer), if any is waiting."""
        waiting = [max(self.fit_since[k], self.withdrawn_at[k]) for k in self.fit_since
                   if k not in self.announced and k in self.withdrawn_at]
        if not waiting or self.config.bgp is None:
            return None
        return min(waiting) + self.config.bgp.hold_down_s
