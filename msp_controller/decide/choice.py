"""Which tunnel paths each traffic class uses, in each direction, given policy and health.

A pure function of the homenet's policy, its path plan (which tunnels exist and are
live), the SLA verdicts from the probes and flap damping (decide/damping.py: a damped
path comes after every undamped live path, so the data plane does not move traffic back
onto it while it is being damped). The result orders the buckets of the class's group:
for failover and sla the data plane takes the first live bucket, for balance it
spreads flows by a hash of their 5-tuple over one edge's paths by weight, each flow
falling back to the next live path when its own dies.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Final, Literal

from msp_controller.decide.paths import PathPlan, TunnelPath
from msp_controller.model.policy import BALANCE, DEFAULT_NAME, SLA, DirectionPolicy, Mode, PacketMatch, Policy
from msp_controller.model.qos import ClassQos

Direction = Literal["egress", "ingress"]
EGRESS: Final[Direction] = "egress"
INGRESS: Final[Direction] = "ingress"
Usable = Callable[[str, Direction, TunnelPath], bool]  # (class, direction, path) -> meets its SLA


@dataclass(frozen=True, slots=True)
class DirectionChoice:
    """One class in one direction, ready to compile into a group and its flows."""

    index: int  # 0 for the default class, 1.. for the policy's classes in order
    name: str
    direction: Direction
    mode: Mode
    paths: tuple[TunnelPath, ...]  # preference order; balance: the balanced edge's paths first
    weights: tuple[int, ...]  # balance only, one per path
    match: PacketMatch | None  # None for the default class
    active: tuple[TunnelPath, ...]  # what carries the traffic now
    damped: frozenset[TunnelPath] = frozenset()  # put after the others in every group (balance too)
    qos: ClassQos = ClassQos()  # the class's marking and rate limit (dataplane/flows/qos.py)

    def describe_active(self) -> str | None:
        return " + ".join(str(p) for p in self.active) if self.active else None


def _ordered(plan: PathPlan, policy: DirectionPolicy, usable: Callable[[TunnelPath], bool],
             damped: Collection[TunnelPath]) -> tuple[TunnelPath, ...]:
    rank = {isp: i for i, isp in enumerate(policy.order)}
    edge_rank = {edge: i for i, edge in enumerate(dict.fromkeys(p.edge for p in plan.paths))}
    candidates = [p for p in plan.paths if p.uplink in rank]
    # Live before dead; then undamped before damped; then (sla) meeting the SLA; then the
    # preferred edge, where BGP brings the traffic in; then the policy's ISP order.
    def key(path: TunnelPath) -> tuple[bool, bool, bool, int, int]:
        meets_sla = usable(path) if policy.mode == SLA else True
        return (path not in plan.live, path in damped, not meets_sla, edge_rank[path.edge], rank[path.uplink])

    return tuple(sorted(candidates, key=key))


def _choice(index: int, name: str, direction: Direction, policy: DirectionPolicy, match: PacketMatch | None,
            plan: PathPlan, usable: Usable, damped: frozenset[TunnelPath]) -> DirectionChoice:
    if policy.mode == BALANCE:
        weight_of = dict(policy.weights)
        weighted = [p for p in plan.paths if p.uplink in weight_of]
        # The MSPMB balances over one edge's ISPs: the preferred edge that still has a live
        # path; every edge balances what the Internet sends it over its own. Paths of every
        # edge are kept (that edge first) so each edge can deliver, and the MSPMB can fall
        # back to another edge in the data plane. The order depends on liveness only through
        # the edge chosen, so flows keep their hash link while that edge is usable.
        edges = list(dict.fromkeys(p.edge for p in weighted))
        trusted = plan.live - damped
        edge = next((e for e in edges if any(p.edge == e and p in trusted for p in weighted)),
                    next((e for e in edges if any(p.edge == e and p in plan.live for p in weighted)),
                         edges[0] if edges else None))
        edge_order = sorted(edges, key=lambda e: e != edge)
        paths = tuple(p for e in edge_order for isp, _ in policy.weights
                      for p in weighted if p.uplink == isp and p.edge == e)
        weights = tuple(weight_of[p.uplink] for p in paths)
        live_here = [p for p in paths if p.edge == edge and p in plan.live]
        # A damped path's flows take the edge's other paths (its group lists it last).
        active = tuple(p for p in live_here if p not in damped) or tuple(live_here)
        return DirectionChoice(index, name, direction, policy.mode, paths, weights, match, active,
                               damped & frozenset(paths))
    paths = _ordered(plan, policy, lambda p: usable(name, direction, p), damped)
    first_live = next((p for p in paths if p in plan.live), None)
    return DirectionChoice(index, name, direction, policy.mode, paths, (), match,
                           (first_live,) if first_live else (), damped & frozenset(paths))


def choose(policy: Policy, plan: PathPlan, direction: Direction, usable: Usable,
           damped: Collection[TunnelPath] = frozenset()) -> tuple[DirectionChoice, ...]:
    """Every class of the policy in one direction; the default class comes first (index 0).
    damped: the paths flap damping keeps behind the others for now."""
    held = frozenset(damped)
    default = policy.default.egress if direction == EGRESS else policy.default.ingress
    choices = [replace(_choice(0, DEFAULT_NAME, direction, default, None, plan, usable, held),
                       qos=policy.default.qos)]
    for index, traffic_class in enumerate(policy.classes, start=1):
        if direction == EGRESS:
            choices.append(_choice(index, traffic_class.name, direction, traffic_class.egress,
                                   traffic_class.match.as_egress(), plan, usable, held))
        else:
            choices.append(_choice(index, traffic_class.name, direction, traffic_class.ingress,
                                   traffic_class.match.mirrored(), plan, usable, held))
        choices[-1] = replace(choices[-1], qos=traffic_class.qos)
    return tuple(choices)
