"""Which tunnel paths a homenet has, which are live, and in which order to use them.

A pure function of the config and the liveness the switches report. The homenet's
reachability is a small graph (MSPMB -> ISP -> edge -> Internet) so that adding edges or
ISPs only adds nodes; the order follows the homenet's egress or ingress policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import networkx as nx

from .config import Homenet, MspConfig, edge_tunnel_port, mspmb_tunnel_port

INTERNET = "internet"


@dataclass(frozen=True)
class TunnelPath:
    """One tunnel between a homenet's MSPMB and an edge, over one ISP."""

    homenet: str
    uplink: str
    edge: str

    def __str__(self) -> str:
        return f"{self.uplink}@{self.edge}"


# Liveness of a port as the switches last reported it: True, False, or None (not known:
# the switch is not connected or has not reported the port).
PortLiveness = Mapping[tuple[int, str], Optional[bool]]


@dataclass(frozen=True)
class PathPlan:
    homenet: str
    paths: tuple[TunnelPath, ...]  # every tunnel path the homenet has
    egress: tuple[TunnelPath, ...]  # live paths in the config's order, then the others
    ingress: tuple[TunnelPath, ...]
    live: frozenset[TunnelPath]

    @property
    def active_egress(self) -> TunnelPath | None:
        return next((p for p in self.egress if p in self.live), None)

    @property
    def active_ingress(self) -> TunnelPath | None:
        return next((p for p in self.ingress if p in self.live), None)


def homenet_graph(config: MspConfig, homenet: Homenet, liveness: PortLiveness) -> nx.DiGraph:
    """MSPMB -> ISP -> edge -> Internet, each link marked live or not."""
    graph = nx.DiGraph()
    home = ("mspmb", homenet.name)
    edge = config.edge(homenet.edge)
    for uplink in homenet.uplinks:
        isp = ("isp", uplink.name)
        graph.add_edge(home, isp, live=True)
        home_end = liveness.get((homenet.dpid, mspmb_tunnel_port(edge, uplink)))
        edge_end = liveness.get((edge.dpid, edge_tunnel_port(homenet, uplink)))
        # A tunnel is dead only when one of its ends says so: an end we cannot see yet
        # (switch reconnecting) must not make us move traffic that is flowing.
        graph.add_edge(isp, ("edge", edge.name), live=home_end is not False and edge_end is not False)
    graph.add_edge(("edge", edge.name), INTERNET, live=True)
    return graph


def _paths(graph: nx.DiGraph, homenet: Homenet) -> list[tuple[TunnelPath, bool]]:
    found = []
    for nodes in nx.all_simple_paths(graph, ("mspmb", homenet.name), INTERNET):
        live = all(graph.edges[a, b]["live"] for a, b in zip(nodes, nodes[1:]))
        isp = next(n[1] for n in nodes if isinstance(n, tuple) and n[0] == "isp")
        edge = next(n[1] for n in nodes if isinstance(n, tuple) and n[0] == "edge")
        found.append((TunnelPath(homenet.name, isp, edge), live))
    return found


def _ordered(paths: list[tuple[TunnelPath, bool]], order: tuple[str, ...]) -> tuple[TunnelPath, ...]:
    rank = {isp: i for i, isp in enumerate(order)}
    unranked = len(order)
    return tuple(path for path, _ in sorted(
        paths, key=lambda item: (not item[1], rank.get(item[0].uplink, unranked), item[0].edge)))


def plan_homenet(config: MspConfig, homenet: Homenet, liveness: PortLiveness) -> PathPlan:
    paths = _paths(homenet_graph(config, homenet, liveness), homenet)
    return PathPlan(
        homenet=homenet.name,
        paths=tuple(path for path, _ in paths),
        egress=_ordered(paths, homenet.egress_order),
        ingress=_ordered(paths, homenet.ingress_order),
        live=frozenset(path for path, live in paths if live),
    )


def plan_all(config: MspConfig, liveness: PortLiveness) -> dict[str, PathPlan]:
    return {h.name: plan_homenet(config, h, liveness) for h in config.homenets}
