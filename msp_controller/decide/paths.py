"""Which tunnel paths a homenet has and which are live.

A pure function of the config and the liveness the switches report. The homenet's
reachability is a small graph (MSPMB -> ISP -> edge -> Internet) so that adding edges or
ISPs only adds nodes. In which order each class uses the paths is decided in one place:
decide/choice.py.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from msp_controller.model.config import Homenet, MspConfig, edge_tunnel_port, mspmb_tunnel_port

INTERNET = "internet"


@dataclass(frozen=True, slots=True)
class TunnelPath:
    """One tunnel between a homenet's MSPMB and an edge, over one ISP."""

    homenet: str
    uplink: str
    edge: str

    def __str__(self) -> str:
        return f"{self.uplink}@{self.edge}"


# Liveness of a port as the switches last reported it: True, False, or None (not known:
# the switch is not connected or has not reported the port).
PortLiveness = Mapping[tuple[int, str], bool | None]


@dataclass(frozen=True)
class PathPlan:
    homenet: str
    paths: tuple[TunnelPath, ...]  # every tunnel path: the preferred edge first, then uplink order
    live: frozenset[TunnelPath]
    # Live by what both tunnel ends have reported (an end not heard from counts as dead):
    # what may be promised to the Internet by BGP.
    known_live: frozenset[TunnelPath] = frozenset()


def homenet_graph(config: MspConfig, homenet: Homenet, liveness: PortLiveness,
                  edges_up: Mapping[str, bool] | None = None, unknown_is_live: bool = True) -> nx.DiGraph:
    """MSPMB -> ISP -> edge -> Internet, each link marked live or not.

    edges_up: whether each edge's switch is connected to the controller (absent: assume up);
    an edge the controller cannot see is not used, and its announcements are withdrawn.
    """
    graph = nx.DiGraph()
    home = ("mspmb", homenet.name)
    for uplink in homenet.uplinks:
        isp = ("isp", uplink.name)
        graph.add_edge(home, isp, live=True)
        for edge_name in homenet.edges:
            edge = config.edge(edge_name)
            home_end = liveness.get((homenet.dpid, mspmb_tunnel_port(edge, uplink)))
            # The edge can send into the tunnel only once it knows where the box's end is.
            edge_end = liveness.get((edge.dpid, edge_tunnel_port(uplink))) if uplink.address else False
            # A tunnel is dead only when one of its ends says so: an end we cannot see yet
            # (switch reconnecting) must not make us move traffic that is flowing.
            known = bool(home_end) and bool(edge_end)
            live = (home_end is not False and edge_end is not False) if unknown_is_live else known
            graph.add_edge(isp, ("edge", edge.name), live=live, known=known)
    for edge_name in homenet.edges:
        up = (edges_up or {}).get(edge_name, True)
        graph.add_edge(("edge", edge_name), INTERNET, live=up, known=up)
    return graph


def _paths(graph: nx.DiGraph, homenet: Homenet) -> list[tuple[TunnelPath, bool, bool]]:
    """Every path with whether it is live and whether it is known live."""
    found = []
    for nodes in nx.all_simple_paths(graph, ("mspmb", homenet.name), INTERNET):
        links = [graph.edges[a, b] for a, b in itertools.pairwise(nodes)]
        isp = next(n[1] for n in nodes if isinstance(n, tuple) and n[0] == "isp")
        edge = next(n[1] for n in nodes if isinstance(n, tuple) and n[0] == "edge")
        found.append((TunnelPath(homenet.name, isp, edge), all(link["live"] for link in links),
                      all(link.get("known", link["live"]) for link in links)))
    # Preferred edge first, then the uplinks' order: the order everything else builds on.
    slots = {uplink.name: uplink.slot for uplink in homenet.uplinks}
    return sorted(found, key=lambda item: (homenet.edges.index(item[0].edge), slots[item[0].uplink]))


def plan_homenet(config: MspConfig, homenet: Homenet, liveness: PortLiveness,
                 edges_up: Mapping[str, bool] | None = None, unknown_is_live: bool = True) -> PathPlan:
    """unknown_is_live: whether a tunnel end not (yet) reported counts as live. Forwarding
    says yes (do not move traffic that flows); announcing by BGP says no (only promise what
    is known to work)."""
    paths = _paths(homenet_graph(config, homenet, liveness, edges_up, unknown_is_live), homenet)
    return PathPlan(
        homenet=homenet.name,
        paths=tuple(path for path, _, _ in paths),
        live=frozenset(path for path, live, _ in paths if live),
        known_live=frozenset(path for path, _, known in paths if known),
    )


def plan_all(config: MspConfig, liveness: PortLiveness,
             edges_up: Mapping[str, bool] | None = None, unknown_is_live: bool = True) -> dict[str, PathPlan]:
    return {h.name: plan_homenet(config, h, liveness, edges_up, unknown_is_live) for h in config.homenets}
