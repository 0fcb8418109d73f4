"""Who owns what: datapath ids, edge tunnel ports and names, each to its homenet or edge.

Every event is routed to its owner through these maps, in constant time, so that an event
about one homenet never looks at the others.
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from msp_controller.dataplane.pipeline import EDGE, MSPMB, UNDERLAY, Pipeline
from msp_controller.model.config import Edge, Homenet, MspConfig, edge_slot_port
from msp_controller.model.errors import FieldError
from msp_controller.model.homenet_index import HomenetIndex


class Kind(enum.Enum):
    MSPMB = "mspmb"
    EDGE = "edge"
    UNDERLAY = "underlay"


@dataclass(frozen=True)
class Role:
    kind: Kind
    name: str  # homenet, edge, or "<owner>/<bridge>" for underlays
    pipeline: Pipeline
    homenet: str | None = None  # the owning homenet (its MSPMB and uplink underlays)
    edge: str | None = None  # the owning edge (the edge and its underlay)


class Registry:
    def __init__(self, config: MspConfig) -> None:
        self.edges: dict[str, Edge] = {edge.name: edge for edge in config.edges}
        self.homenets: dict[str, Homenet] = {}
        self.roles: dict[int, Role] = {}
        self.at_edge: dict[str, dict[str, None]] = {edge.name: {} for edge in config.edges}  # ordered sets
        # (edge, port name) of each edge's tunnel ports: one per uplink slot, every homenet's.
        self.tunnel_ports: set[tuple[str, str]] = {
            (edge.name, edge_slot_port(slot)) for edge in config.edges for slot in range(len(edge.tunnel_addresses))}
        self.index = HomenetIndex(config.edges)
        for edge in config.edges:
            self.roles[edge.dpid] = Role(Kind.EDGE, edge.name, EDGE, edge=edge.name)
            self.roles[edge.underlay_dpid] = Role(Kind.UNDERLAY, f"{edge.name}/{edge.underlay_bridge}", UNDERLAY,
                                                  edge=edge.name)

    def check(self, homenet: Homenet, where: str = "homenet", replacing: str | None = None) -> None:
        """FieldError naming the field if the homenet clashes with another; changes nothing."""
        self.index.check(homenet, where, replacing)

    def add(self, homenet: Homenet) -> None:
        self.check(homenet)
        self.index.add(homenet)
        self.homenets[homenet.name] = homenet
        self.roles[homenet.dpid] = Role(Kind.MSPMB, homenet.name, MSPMB, homenet=homenet.name)
        for uplink in homenet.uplinks:
            self.roles[uplink.underlay_dpid] = Role(Kind.UNDERLAY, f"{homenet.name}/{uplink.bridge}", UNDERLAY,
                                                    homenet=homenet.name)
        for edge in homenet.edges:
            self.at_edge[edge][homenet.name] = None

    def remove(self, name: str) -> Homenet:
        homenet = self.homenets.pop(name)
        self.index.remove(homenet)
        for dpid in self.dpids(homenet):
            self.roles.pop(dpid, None)
        for edge in homenet.edges:
            self.at_edge[edge].pop(name, None)
        return homenet

    @staticmethod
    def dpids(homenet: Homenet) -> list[int]:
        return [homenet.dpid, *(uplink.underlay_dpid for uplink in homenet.uplinks)]

    def homenet(self, name: str) -> Homenet:
        try:
            return self.homenets[name]
        except KeyError:
            raise FieldError("homenet", f"no homenet named {name!r}") from None

    def edge(self, name: str) -> Edge:
        return self.edges[name]

    def homenets_at(self, edge: str) -> Iterator[str]:
        return iter(list(self.at_edge[edge]))
