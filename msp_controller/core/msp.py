"""The controller's decisions, free of Ryu's event loop, one homenet at a time.

Each event method takes the current time and returns Effects: the OpenFlow messages to
send by datapath id, and the BGP prefixes whose announcements changed. An event about one
homenet (a port on its boxes, a probe verdict, its policy, its MSPMB connecting) recomputes
that homenet alone and sends only its messages: to its MSPMB and underlays, and its own
part of each edge's program. An edge connecting or leaving touches the homenets on that
edge, once each. Nothing on an event's path iterates over every homenet.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from msp_controller.core.autoconf import AutoconfAnswer, HostAutoconf
from msp_controller.core.effects import BgpChanges, Effects
from msp_controller.core.homenet import DIRECTIONS, HomenetState, SlaKey
from msp_controller.core.probing import ProbeScheduler
from msp_controller.core.registry import Kind, Registry, Role
from msp_controller.core.switches import Pending, PortState, SwitchState, union
from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.claims import ClaimGuard, binding_of
from msp_controller.dataplane.flows.common import SwitchProgram
from msp_controller.dataplane.flows.edge import default_route_flow, edge_base_program, edge_homenet_part, tunnel_exit
from msp_controller.dataplane.flows.mspmb import host_flow, mspmb_program
from msp_controller.dataplane.flows.underlay import underlay_program
from msp_controller.dataplane.meters import punt_meters
from msp_controller.dataplane.neighbors import RouterInterface, destination_of, handle_frame, solicit
from msp_controller.dataplane.pipeline import MSPMB_DELIVER
from msp_controller.dataplane.probe_packet import ProbeTemplate, parse_probe
from msp_controller.dataplane.ra import link_local
from msp_controller.dataplane.reconcile import ReportedFlow, read_requests, reconcile, transition
from msp_controller.decide.announce import HomenetAnnouncements, Route, prefix_routes
from msp_controller.decide.choice import EGRESS, INGRESS, Direction, choose
from msp_controller.decide.damping import FlapDamper, hold_s
from msp_controller.decide.paths import PathPlan, TunnelPath, plan_homenet
from msp_controller.decide.probes import PathStats, ProbeTracker, SlaJudge
from msp_controller.model.config import Edge, Homenet, MspConfig, edge_tunnel_port, with_uplink_address
from msp_controller.model.policy import Policy, default_policy, parse_policy

Messages = dict[int, list[Any]]
LOG = logging.getLogger("msp.core")

HOST_IDLE_TIMEOUT_S = 600  # a silent host's entry ages out; the next packet re-resolves it
SOLICIT_INTERVAL_S = 1.0  # at most one ARP/NS per unresolved address per second
# Per switch. A LAN's hosts (254 IPv4 and a few IPv6 addresses each) fit; a host claiming
# address after address of a /64, or misses for ever new destinations, must not grow memory.
MAX_NEIGHBORS = 1024  # learned entries: beyond it the oldest is forgotten, its flow deleted
MAX_SOLICITING = 1024  # addresses asked for within the last interval: beyond it, ask later
GATEWAY_REFRESH_S = 30.0  # re-ask the upstream router even when its MAC is known
# Solicitation times and claim records are checked for age this often, switch by switch
# (only switches that hold some); a solicitation is forgotten after GATEWAY_REFRESH_S.
AGEING_CHECK_S = 10.0
MAX_STRANGERS = 256  # connected switches nobody owns, remembered for a homenet created later
PROBE_WINDOW_S = 5.0  # RTT, jitter and loss are estimated over this sliding window
PROBE_TIMEOUT_S = 1.0  # a probe unanswered this long is lost
PROBE_INTERVAL_S = 0.05
PROBE_BUDGET_PPS = 2000.0  # all probes of the controller together (see probing.py)
PATHS_PER_HOMENET = 64  # path ids: homenet id * 64 + the path's index
OWN = ""  # the part of a switch's program that is its own (not a homenet's part at an edge)
EMPTY = SwitchProgram()


@dataclass(frozen=True)
class PathChange:
    at: float
    homenet: str
    direction: Direction
    old: str | None
    new: str | None
    traffic_class: str = "default"


@dataclass
class PortCounters:
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0


class _Liveness(Mapping[tuple[int, str], bool | None]):
    """Port liveness read through to the switches' state: nothing is copied per event."""

    def __init__(self, switches: dict[int, SwitchState]) -> None:
        self._switches = switches

    def __getitem__(self, key: tuple[int, str]) -> bool | None:
        switch = self._switches.get(key[0])
        if switch is None or key[1] not in switch.ports:
            raise KeyError(key)
        return switch.ports[key[1]].live

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return ((dpid, name) for dpid, switch in self._switches.items() for name in switch.ports)

    def __len__(self) -> int:
        return sum(len(switch.ports) for switch in self._switches.values())


class MspCore:
    def __init__(self, config: MspConfig, policies: Mapping[str, Policy] | None = None,
                 homenets: Iterable[Homenet] | None = None, probe_budget_pps: float = PROBE_BUDGET_PPS) -> None:
        """config: the MSP's settings (edges, BGP); homenets: the homenets to serve (default:
        the config's); policies: stored policies by homenet (default: each one's default)."""
        self.config = config
        self.registry = Registry(config)
        self.switches: dict[int, SwitchState] = {}
        self.homenets: dict[str, HomenetState] = {}
        self.liveness = _Liveness(self.switches)
        self.tracker: ProbeTracker[TunnelPath] = ProbeTracker(PROBE_WINDOW_S, PROBE_TIMEOUT_S)
        self.judge: SlaJudge[SlaKey] = SlaJudge(silence_s=PROBE_TIMEOUT_S)
        self.prober: ProbeScheduler[TunnelPath] = ProbeScheduler(probe_budget_pps, PROBE_INTERVAL_S)
        self._to_judge: set[str] = set()
        self.path_by_id: dict[int, TunnelPath] = {}
        self.counters: dict[tuple[int, int], PortCounters] = {}
        self.bgp_routes: dict[str, dict[str, Route]] = {}  # prefix -> neighbor -> route, as announced
        self._holddowns: list[tuple[float, str]] = []  # (when, homenet): announcements to revisit
        self.damper: FlapDamper[TunnelPath] = FlapDamper()  # flap damping, one entry per path
        # (when, homenet): a damped path is trusted again; _damping_wake holds each homenet's
        # earliest such time, so that later (superseded) heap entries are skipped.
        self._damping_due: list[tuple[float, str]] = []
        self._damping_wake: dict[str, float] = {}
        self.path_changes: collections.deque[PathChange] = collections.deque(maxlen=1000)
        # Totals since start, for metrics (the deque keeps only the last changes).
        self.path_changes_total: collections.Counter[str] = collections.Counter()  # by direction
        self.reconciliations: collections.Counter[str] = collections.Counter()  # by role kind
        self.ignored_packets = 0
        self.claims: dict[int, ClaimGuard] = {}  # per switch: who may take which address
        self.autoconf = HostAutoconf()  # DHCP leases and router advertisements (core/autoconf.py)
        self.strangers: dict[int, dict[str, PortState]] = {}  # connected, owned by no homenet (yet)
        self.punt_meters = punt_meters(config.flood)  # on every MSPMB and edge (dataplane/meters.py)
        self._ageing: list[tuple[float, int]] = []  # (when, dpid): switches whose tables may age
        self._ageing_armed: set[int] = set()
        for homenet in (config.homenets if homenets is None else homenets):
            self.add_homenet(homenet, 0.0, (policies or {}).get(homenet.name))

    # --- homenets as runtime resources ----------------------------------------------------

    def check_homenet(self, homenet: Homenet, replacing: str | None = None) -> None:
        """FieldError naming the field if `homenet` clashes with the others; nothing changes."""
        self.registry.check(homenet, replacing=replacing)

    def add_homenet(self, homenet: Homenet, now: float, policy: Policy | None = None) -> Effects:
        """Serve a new homenet: program its switches as they connect (those connected now at
        once), announce its prefixes once a tunnel of it is up. FieldError on a clash."""
        self.registry.add(homenet)
        self.autoconf.add_homenet(homenet)
        plan = plan_homenet(self.config, homenet, self.liveness, self._edges_up())
        state = HomenetState(homenet, policy or default_policy(homenet), plan,
                             HomenetAnnouncements(self.config.bgp.hold_down_s if self.config.bgp else 0.0))
        self.homenets[homenet.name] = state
        self._number_paths(state, now)
        return self._adopt(homenet, now).merge(self._replan(state, now))

    def _adopt(self, homenet: Homenet, now: float) -> Effects:
        """The homenet's switches that connected before it existed: reconcile them now."""
        effects = Effects()
        for dpid in self.registry.dpids(homenet):
            ports = self.strangers.pop(dpid, None)
            if ports is not None:
                LOG.info("datapath %016x is %s's: reconciling it", dpid, homenet.name)
                self.switches[dpid] = SwitchState(ports)
                effects.add(dpid, read_requests())
        return effects

    def replace_homenet(self, homenet: Homenet, now: float, policy: Policy | None = None) -> Effects:
        """Change a homenet in place: what it keeps is left alone on its switches."""
        old = self.homenets[homenet.name]
        self.registry.check(homenet, replacing=homenet.name)
        effects = Effects()
        gone = set(self.registry.dpids(old.spec)) - set(self.registry.dpids(homenet))
        for dpid in gone:
            effects.merge(self._clear(dpid, OWN))
            self.switches.pop(dpid, None)  # still connected, but nobody's switch now
        for edge in set(old.spec.edges) - set(homenet.edges):
            effects.merge(self._clear(self.registry.edge(edge).dpid, homenet.name))
        for prefix in set(map(str, old.spec.prefixes)) - set(map(str, homenet.prefixes)):
            effects.bgp[prefix] = {}
            self.bgp_routes.pop(prefix, None)
        self._forget_paths(old)
        self.registry.remove(homenet.name)
        self.registry.add(homenet)
        self.autoconf.add_homenet(homenet)
        old.spec = homenet
        old.policy = policy or old.policy
        old.plan = plan_homenet(self.config, homenet, self.liveness, self._edges_up())
        self._number_paths(old, now)
        effects.merge(self._adopt(homenet, now))
        effects.merge(self._replan(old, now))
        effects.bgp.update(self._routes(old))  # the new prefixes, wherever it is announced
        return effects

    def set_uplink_address(self, homenet: str, uplink: str, address: ipaddress.IPv4Address | None,
                           now: float) -> Effects:
        """An ISP gave a homenet's box a new address (a lease, a renumbering), or took it
        away (None): the edges send that uplink's tunnels there and accept them only from
        there. Only this homenet's parts change; its paths, probes and damping stay."""
        state = self.homenets[homenet]
        old = state.spec.uplink(uplink)  # KeyError: no such uplink
        if old.address == address:
            return Effects()
        LOG.info("%s: uplink %s address %s -> %s", homenet, uplink, old.address, address)
        spec = with_uplink_address(state.spec, uplink, address)
        self.registry.homenets[homenet] = spec
        state.spec = spec
        return self._replan(state, now)

    def remove_homenet(self, name: str, now: float) -> Effects:
        """Stop serving a homenet: its flows and groups go from every switch, its prefixes are
        withdrawn, its state is forgotten."""
        state = self.homenets.pop(name)
        effects = Effects()
        for dpid in self.registry.dpids(state.spec):
            effects.merge(self._clear(dpid, OWN))
            self.switches.pop(dpid, None)  # still connected, but nobody's switch now
        for edge in state.spec.edges:
            effects.merge(self._clear(self.registry.edge(edge).dpid, name))
        for prefix in state.spec.prefixes:
            effects.bgp[str(prefix)] = {}
            self.bgp_routes.pop(str(prefix), None)
        self._forget_paths(state)
        self.registry.remove(name)
        self.autoconf.remove_homenet(name)
        self._to_judge.discard(name)
        self._damping_wake.pop(name, None)
        LOG.info("%s: removed", name)
        return effects

    def _clear(self, dpid: int, part: str) -> Effects:
        """Remove one part of a switch's program; a switch's own part takes its learned
        neighbour entries with it."""
        if part == OWN:
            self.claims.pop(dpid, None)  # and their claim records
        switch = self.switches.get(dpid)
        if switch is None or switch.parts is None or part not in switch.parts:
            return Effects()
        old = switch.parts.pop(part)
        switch.inputs.pop(part, None)
        messages = transition(old, EMPTY)
        if part == OWN:
            messages += [ofmsg.flow_delete_strict(f.table, f.priority, ofmsg.ryu_match(f.match), f.cookie)
                         for f in switch.neighbors.values()]
            switch.neighbors.clear()
        return Effects({dpid: messages})

    def _number_paths(self, state: HomenetState, now: float) -> None:
        state.probe_templates.clear()
        state.path_ids = {path: state.spec.id * PATHS_PER_HOMENET + index
                          for index, path in enumerate(state.plan.paths)}
        for path, path_id in state.path_ids.items():
            self.path_by_id[path_id] = path
        self._schedule_probes(state, now)

    def _schedule_probes(self, state: HomenetState, now: float) -> None:
        judged = {key[2] for key, _ in state.sla_rules()}
        for path in state.plan.paths:
            self.prober.add(path, path in judged, now)

    def _forget_paths(self, state: HomenetState) -> None:
        for path, path_id in state.path_ids.items():
            self.path_by_id.pop(path_id, None)
            self.prober.remove(path)
            self.tracker.forget(path)
            self.damper.forget(path)
            for class_name, direction, _ in state.policy.direction_policies():
                self.judge.forget((class_name, direction, path))

    # --- desired programs -------------------------------------------------------------------

    def role(self, dpid: int) -> Role | None:
        return self.registry.roles.get(dpid)

    def _ports(self, dpid: int) -> dict[str, int]:
        switch = self.switches.get(dpid)
        return switch.port_numbers() if switch else {}

    def _part(self, dpid: int, part: str) -> SwitchProgram:
        role = self.registry.roles[dpid]
        ports = self._ports(dpid)
        if role.kind is Kind.EDGE:
            edge = self.registry.edge(role.name)
            if part == OWN:
                program = edge_base_program(edge, ports)
            else:
                state = self.homenets[part]
                program = edge_homenet_part(self.config, edge, state.spec, ports, state.choices[INGRESS],
                                            state.plan.live)
        elif role.kind is Kind.MSPMB:
            state = self.homenets[role.name]
            program = mspmb_program(self.config, state.spec, ports, state.choices[EGRESS])
        else:
            program = self._underlay_program(role, ports)
        if part == OWN and role.kind in (Kind.MSPMB, Kind.EDGE):
            program = dataclasses.replace(program, meters=program.meters + self.punt_meters)
        for flow in program.flows:
            role.pipeline.check(flow)
        return program

    def _underlay_program(self, role: Role, ports: dict[str, int]) -> SwitchProgram:
        if role.edge is not None:
            edge = self.registry.edge(role.edge)
            if edge.underlay_port not in ports:
                return EMPTY
            return underlay_program(ports[edge.underlay_port], None, [a.ip for a in edge.tunnel_addresses])
        homenet = self.registry.homenet(role.homenet or "")
        uplink = next(u for u in homenet.uplinks if role.name.endswith("/" + u.bridge))
        if uplink.port not in ports:
            return EMPTY
        edges = [self.registry.edge(name) for name in homenet.edges]
        return underlay_program(ports[uplink.port], [e.tunnel_ip(uplink.slot) for e in edges], dhcp_client=True)

    def _parts_of(self, dpid: int) -> dict[str, SwitchProgram]:
        role = self.registry.roles[dpid]
        parts = {OWN: self._part(dpid, OWN)}
        if role.kind is Kind.EDGE:
            for name in self.registry.homenets_at(role.name):
                parts[name] = self._part(dpid, name)
        return parts

    def _inputs(self, dpid: int, part: str, switch: SwitchState) -> tuple[Any, ...]:
        """Everything a part is compiled from: equal inputs, equal part (no compile needed)."""
        role = self.registry.roles[dpid]
        if part != OWN:
            state = self.homenets[part]
            internet = switch.numbers.get(self.registry.edge(role.name).internet_port)  # its BCP 38 drops
            ports = tuple(switch.numbers.get(edge_tunnel_port(u)) for u in state.spec.uplinks)
            return state.spec, state.choices[INGRESS], state.plan.live, ports, internet
        if role.kind is Kind.MSPMB:
            state = self.homenets[role.name]
            return state.spec, state.choices[EGRESS], tuple(sorted(switch.numbers.items()))
        return (role, tuple(sorted(switch.numbers.items())) if role.kind is Kind.UNDERLAY
                else switch.numbers.get(self.registry.edge(role.name).internet_port))

    def _update_part(self, dpid: int, part: str) -> Effects:
        """Move one part of a reconciled switch to what it should be now."""
        switch = self.switches.get(dpid)
        if switch is None or switch.parts is None:
            return Effects()
        inputs = self._inputs(dpid, part, switch)
        if switch.inputs.get(part) == inputs:
            return Effects()
        switch.inputs[part] = inputs
        wanted = self._part(dpid, part)
        installed = switch.parts.get(part, EMPTY)
        if wanted == installed:
            return Effects()
        switch.parts[part] = wanted
        return Effects({dpid: transition(installed, wanted)})

    # --- one homenet ------------------------------------------------------------------------

    def _edges_up(self) -> dict[str, bool]:
        """An edge whose switch is not connected is not used (and not announced)."""
        return {name: edge.dpid in self.switches for name, edge in self.registry.edges.items()}

    def _edges_programmed(self) -> dict[str, bool]:
        return {name: (s := self.switches.get(edge.dpid)) is not None and s.reconciled
                for name, edge in self.registry.edges.items()}

    def _replan(self, state: HomenetState, now: float) -> Effects:
        """Recompute one homenet's paths and class choices; move its parts to match."""
        state.plan = plan_homenet(self.config, state.spec, self.liveness, self._edges_up())
        old = state.choices
        damped = self._damp(state, now)
        state.choices = {direction: choose(state.policy, state.plan, direction, self._usable, damped)
                         for direction in DIRECTIONS}
        self._log_choices(state, old, now)
        effects = Effects()
        effects.touched.add(state.name)
        effects.merge(self._update_part(state.spec.dpid, OWN))
        for edge_name in state.spec.edges:
            effects.merge(self._update_part(self.registry.edge(edge_name).dpid, state.name))
        effects.bgp.update(self._announce(state, now))
        return effects

    def _damp(self, state: HomenetState, now: float) -> frozenset[TunnelPath]:
        """Feed the plan's liveness to flap damping; return the paths it holds back now, and
        wake the tick when the first of them is due to be trusted (O(this homenet's paths))."""
        rule, plan = state.policy.damping, state.plan
        for path in plan.paths:
            # Known up, or down by some end's report; a silent end (reconnecting) says nothing.
            up = True if path in plan.known_live else False if path not in plan.live else None
            self.damper.observe(path, up, rule, now)
        due = self.damper.next_trusted(plan.paths, rule, now)
        if due is not None and due < self._damping_wake.get(state.name, math.inf):
            self._damping_wake[state.name] = due
            heapq.heappush(self._damping_due, (due, state.name))
        damped = frozenset(path for path in plan.paths if self.damper.damped(path, rule, now))
        before = frozenset(p for choices in state.choices.values() for c in choices for p in c.damped)
        for path in damped - before:
            penalty = self.damper.state(path).penalty
            LOG.info("%s: path %s is damped (penalty %.2f): it comes after the others until it has been "
                     "up for %.1f s", state.name, path, penalty, hold_s(rule, penalty))
        for path in before - damped:
            LOG.info("%s: path %s is trusted again (flap damping)", state.name, path)
        return damped

    def _usable(self, traffic_class: str, direction: Direction, path: TunnelPath) -> bool:
        return self.judge.usable((traffic_class, direction, path))

    def _log_choices(self, state: HomenetState, old: Mapping[str, Any], now: float) -> None:
        if not old:
            return  # a homenet's first plan is no change
        for direction in DIRECTIONS:
            before = {c.name: c.describe_active() for c in old.get(direction, ())}
            for choice in state.choices[direction]:
                was, new = before.get(choice.name, "(start)"), choice.describe_active()
                if was == new:
                    continue
                self.path_changes.append(PathChange(now, state.name, direction, was, new, choice.name))
                self.path_changes_total[direction] += 1
                if new is None:
                    LOG.warning("%s %s %s: no live path left (was %s)", state.name, choice.name, direction, was)
                else:
                    LOG.info("%s %s %s now via %s (was %s)", state.name, choice.name, direction, new, was)

    def _announce(self, state: HomenetState, now: float) -> BgpChanges:
        """Where the homenet's prefixes are announced now; its changed prefixes, if any."""
        programmed = self._edges_programmed()
        # Announce only what is known to work: unknown tunnel ends count as dead here, and
        # an edge counts once it is programmed, not merely connected.
        live = frozenset(path for path in state.plan.known_live if programmed[path.edge])
        known = dataclasses.replace(state.plan, live=live)
        if not state.announcements.update(state.spec, known, programmed, now):
            self._watch_holddown(state)
            return {}
        self._watch_holddown(state)
        return self._routes(state)

    def _routes(self, state: HomenetState) -> BgpChanges:
        """The homenet's prefixes as announced now (every one, {} where withdrawn)."""
        announcing = [self.registry.edge(e) for e in state.spec.edges if e in state.announcements.announced]
        changes = prefix_routes(state.spec, announcing)
        for prefix, routes in changes.items():
            if routes:
                self.bgp_routes[prefix] = routes
            else:
                self.bgp_routes.pop(prefix, None)
        return changes

    def _watch_holddown(self, state: HomenetState) -> None:
        for edge in state.spec.edges:
            until = state.announcements.held_until(edge)
            if until is not None:
                heapq.heappush(self._holddowns, (until, state.name))

    # --- switch events ----------------------------------------------------------------------

    def _affected(self, role: Role) -> list[HomenetState]:
        """The homenets whose paths depend on this switch's ports or presence (an underlay's
        ports carry no tunnel: its events change its own program only)."""
        if role.kind is Kind.MSPMB and role.homenet is not None:
            return [self.homenets[role.homenet]]
        if role.kind is Kind.EDGE:
            return [self.homenets[name] for name in self.registry.homenets_at(role.name)]
        return []

    def switch_up(self, dpid: int, ports: dict[str, PortState], now: float) -> Effects:
        """A switch connected and described its ports: read its tables to reconcile them."""
        role = self.role(dpid)
        if role is None:
            # Kept (ports only) in case a homenet created later owns it: then it is reconciled.
            LOG.warning("datapath %016x is nobody's (yet): not programmed", dpid)
            if dpid not in self.strangers and len(self.strangers) >= MAX_STRANGERS:
                return Effects()  # not remembered: it is reconciled when it next connects
            self.strangers[dpid] = dict(ports)
            return Effects()
        LOG.info("%s %s (%016x) connected with %d ports", role.kind.value, role.name, dpid, len(ports))
        self.switches[dpid] = SwitchState(dict(ports))
        effects = Effects({dpid: read_requests()})
        for state in self._affected(role):
            effects.merge(self._replan(state, now))
        return effects

    def switch_down(self, dpid: int, now: float) -> Effects:
        self.strangers.pop(dpid, None)
        role = self.role(dpid)
        if role is None or self.switches.pop(dpid, None) is None:
            return Effects()
        LOG.warning("%s %s (%016x) disconnected", role.kind.value, role.name, dpid)
        effects = Effects()
        for state in self._affected(role):
            effects.merge(self._replan(state, now))
        return effects

    def flow_stats(self, dpid: int, flows: Iterable[ReportedFlow], more: bool, now: float) -> Effects:
        switch = self.switches.get(dpid)
        if switch is None or switch.pending is None:
            return Effects()
        switch.pending.flows.extend(flows)
        switch.pending.flows_done = not more
        return self._maybe_reconcile(dpid, switch, now)

    def group_desc(self, dpid: int, groups: dict[int, tuple[Any, ...]], more: bool, now: float) -> Effects:
        switch = self.switches.get(dpid)
        if switch is None or switch.pending is None:
            return Effects()
        switch.pending.groups.update(groups)
        switch.pending.groups_done = not more
        return self._maybe_reconcile(dpid, switch, now)

    def meter_config(self, dpid: int, meters: dict[int, tuple[Any, ...]], more: bool, now: float) -> Effects:
        """A reconnecting switch's meters (id -> meters.meter_signature)."""
        switch = self.switches.get(dpid)
        if switch is None or switch.pending is None:
            return Effects()
        switch.pending.meters.update(meters)
        switch.pending.meters_done = not more
        return self._maybe_reconcile(dpid, switch, now)

    def _maybe_reconcile(self, dpid: int, switch: SwitchState, now: float) -> Effects:
        pending: Pending | None = switch.pending
        if pending is None or not pending.done:
            return Effects()
        switch.pending = None
        switch.present_learned = {flow.cookie for flow in pending.flows if flow.is_learned}
        parts = self._parts_of(dpid)
        wanted = union(parts)
        messages = reconcile(wanted, pending.flows, pending.groups, pending.meters)
        switch.parts = parts
        switch.inputs = {part: self._inputs(dpid, part, switch) for part in parts}
        role = self.registry.roles[dpid]
        self.reconciliations[role.kind.value] += 1
        LOG.info("%s %s reconciled: %d messages (%d flows and %d groups wanted, %d flows found)",
                 role.kind.value, role.name, len(messages), len(wanted.flows), len(wanted.groups),
                 len(pending.flows))
        effects = Effects({dpid: messages})
        if role.kind is Kind.MSPMB:
            self.autoconf.start_adverts(self.homenets[role.name].spec, now)
        if role.kind is Kind.EDGE:
            # A programmed edge may now announce the homenets it serves.
            for name in self.registry.homenets_at(role.name):
                effects.bgp.update(self._announce(self.homenets[name], now))
            effects.merge(self._resolve_gateways(self.registry.edge(role.name), now))
        return effects

    def port_status(self, dpid: int, name: str, port: PortState | None, now: float) -> Effects:
        """A port was added or changed (port given) or deleted (port None)."""
        switch = self.switches.get(dpid)
        role = self.role(dpid)
        if switch is None or role is None:
            return Effects()
        before = switch.ports.get(name)
        if port is None:
            switch.remove_port(name)
        else:
            switch.set_port(name, port)
        if before != port:
            LOG.info("%s %s port %s: %s -> %s", role.kind.value, role.name, name, _port_text(before),
                     _port_text(port))
        if role.kind is Kind.EDGE:
            if (role.name, name) in self.registry.tunnel_ports:
                # A slot's tunnel port serves every homenet there: rare (the edge's own
                # underlay or provisioning), and each homenet is replanned on its own.
                effects = Effects()
                for homenet in self._affected(role):
                    effects.merge(self._replan(homenet, now))
                return effects
            effects = self._update_part(dpid, OWN)  # the Internet port: the edge's own flows
            if name == self.registry.edge(role.name).internet_port and \
                    (before and before.number) != (port and port.number):
                # ... and, when its number changes, each homenet's BCP 38 drops that name it.
                for homenet_name in self.registry.homenets_at(role.name):
                    effects.merge(self._update_part(dpid, homenet_name))
            return effects
        if role.kind is Kind.UNDERLAY:
            return self._update_part(dpid, OWN)
        return self._replan(self.homenets[role.name], now)

    # --- neighbours -------------------------------------------------------------------------

    def _interface(self, role: Role, in_port: int,
                   ports: dict[str, int]) -> tuple[RouterInterface, Homenet | Edge] | None:
        if role.kind is Kind.MSPMB:
            homenet = self.homenets[role.name].spec
            if in_port not in {ports.get(name) for name in homenet.lan_ports}:
                return None
            return _lan_interface(homenet), homenet
        if role.kind is Kind.EDGE:
            edge = self.registry.edge(role.name)
            if ports.get(edge.internet_port) != in_port:
                return None
            return _internet_interface(edge), edge
        return None

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes, now: float,
                  tunnel_id: int | None = None) -> Effects:
        """tunnel_id: the VXLAN key a packet came in with (an edge's shared tunnel ports)."""
        switch = self.switches.get(dpid)
        role = self.role(dpid)
        if switch is None or role is None or not switch.reconciled:
            return Effects()
        self._arm_ageing(dpid, now)  # what follows may solicit or record a claim
        if role.kind is Kind.MSPMB and table_id == MSPMB_DELIVER:
            return self._resolve_destination(dpid, switch, role, data, now)
        ports = switch.port_numbers()
        if role.kind is Kind.EDGE and self._is_tunnel_port(role, switch, in_port):
            return self._probe_reply(dpid, in_port, tunnel_id, data, now)
        found = self._interface(role, in_port, ports)
        if found is None:
            self.ignored_packets += 1
            return Effects()
        iface, owner = found
        if isinstance(owner, Homenet):
            answer = self.autoconf.handle(owner, in_port, data, now, _holder_check(switch))
            if answer is not None:
                return self._autoconf_effects(dpid, in_port, owner, answer)
        event = handle_frame(iface, data)
        if event.ignored:
            self.ignored_packets += 1
            LOG.debug("%s %s port %d: ignored packet: %s", role.kind.value, role.name, in_port, event.ignored)
        messages: list[Any] = []
        if event.reply is not None:
            messages.append(ofmsg.packet_out(in_port, event.reply))
        if event.learned is not None:
            messages += self._learn(dpid, switch, owner, in_port, *event.learned, now)
        if event.own_claimed is not None and (note := self._claim_guard(dpid).own_address(
                *event.own_claimed, in_port, now)):
            LOG.warning("%s: %s", owner.name, note)
        return Effects({dpid: messages})

    def _is_tunnel_port(self, role: Role, switch: SwitchState, in_port: int) -> bool:
        name = switch.names.get(in_port)
        return name is not None and (role.name, name) in self.registry.tunnel_ports

    def _claim_guard(self, dpid: int) -> ClaimGuard:
        guard = self.claims.get(dpid)
        if guard is None:
            guard = self.claims[dpid] = ClaimGuard(capacity=2 * MAX_NEIGHBORS)
        return guard

    def _learn(self, dpid: int, switch: SwitchState, owner: Homenet | Edge, port: int, ip: str, mac: str,
               now: float) -> list[Any]:
        if isinstance(owner, Homenet):
            flow = host_flow(owner, ip, mac, port, HOST_IDLE_TIMEOUT_S)
        else:
            address = ipaddress.ip_address(ip)
            if address not in (owner.internet_gateway_ipv4, owner.internet_gateway_ipv6):
                return []
            flow = default_route_flow(owner, port, mac, ipv6=address.version == 6)
        # A known address moves only when its holder is gone (claims.py).
        held = switch.neighbors.get(ip)
        holder = binding_of(held) if held is not None else None
        verdict = self._claim_guard(dpid).judge(ip, mac, port, holder, now)
        if verdict.note:
            LOG.warning("%s: %s", owner.name, verdict.note)
        if not verdict.accepted:
            self.ignored_packets += 1
            return self._ask_holder(dpid, switch, owner, ip, holder, now) if verdict.ask else []
        if held == flow:
            return []
        LOG.info("%s: neighbour %s is %s on port %d", owner.name, ip, mac, port)
        messages = []
        if ip not in switch.neighbors and len(switch.neighbors) >= MAX_NEIGHBORS:
            oldest = switch.neighbors.pop(next(iter(switch.neighbors)))
            switch.present_learned.discard(oldest.cookie)
            messages.append(ofmsg.flow_delete_strict(oldest.table, oldest.priority, ofmsg.ryu_match(oldest.match),
                                                     oldest.cookie))
        switch.neighbors[ip] = flow
        return messages + ([] if flow.cookie in switch.present_learned else [ofmsg.flow_add(flow)])

    def _ask_holder(self, dpid: int, switch: SwitchState, owner: Homenet | Edge, ip: str,
                    holder: tuple[str, int] | None, now: float) -> list[Any]:
        """Solicit an address out of its holder's port: a live holder answers, and keeps it."""
        iface = _lan_interface(owner) if isinstance(owner, Homenet) else _internet_interface(owner)
        frame = solicit(iface, ip)
        if holder is None or frame is None or not _may_solicit(switch, ip, now):
            return []
        self._claim_guard(dpid).asked(ip, now)
        return [ofmsg.packet_out(holder[1], frame)]

    def _autoconf_effects(self, dpid: int, in_port: int, homenet: Homenet, answer: AutoconfAnswer) -> Effects:
        if answer.ignored:
            self.ignored_packets += 1
            LOG.debug("%s port %d: ignored packet: %s", homenet.name, in_port, answer.ignored)
        if answer.note:
            LOG.info("%s: %s", homenet.name, answer.note)
        effects = Effects({dpid: [ofmsg.packet_out(in_port, frame) for frame in answer.replies]})
        effects.leases.extend(answer.changes)
        return effects

    def _spec_of(self, name: str) -> Homenet | None:
        state = self.homenets.get(name)
        return state.spec if state is not None else None

    def _programmed_lan_ports(self, homenet: Homenet) -> list[int] | None:
        switch = self.switches.get(homenet.dpid)
        if switch is None or not switch.reconciled:
            return None
        ports = switch.port_numbers()
        return [ports[name] for name in homenet.lan_ports if name in ports]

    def flow_removed(self, dpid: int, cookie: int) -> None:
        """A learned entry aged out: forget it so that the next sighting installs it again."""
        switch = self.switches.get(dpid)
        if switch is None:
            return
        for ip in [ip for ip, flow in switch.neighbors.items() if flow.cookie == cookie]:
            del switch.neighbors[ip]
        switch.present_learned.discard(cookie)

    def _resolve_destination(self, dpid: int, switch: SwitchState, role: Role, data: bytes, now: float) -> Effects:
        destination = destination_of(data)
        homenet = self.homenets[role.name].spec
        if destination is None or not _may_solicit(switch, destination, now):
            return Effects()
        frame = solicit(_lan_interface(homenet), destination)
        if frame is None:
            return Effects()
        ports = switch.port_numbers()
        return Effects({dpid: [ofmsg.packet_out(ports[name], frame) for name in homenet.lan_ports if name in ports]})

    def _resolve_gateways(self, edge: Edge, now: float) -> Effects:
        switch = self.switches.get(edge.dpid)
        if switch is None or not switch.reconciled or edge.internet_port not in switch.ports:
            return Effects()
        iface = _internet_interface(edge)
        messages = []
        self._arm_ageing(edge.dpid, now)
        for gateway in (edge.internet_gateway_ipv4, edge.internet_gateway_ipv6):
            if gateway is None:
                continue
            interval = GATEWAY_REFRESH_S if str(gateway) in switch.neighbors else SOLICIT_INTERVAL_S
            if _may_solicit(switch, str(gateway), now, interval):
                frame = solicit(iface, str(gateway))
                if frame is not None:
                    messages.append(ofmsg.packet_out(switch.ports[edge.internet_port].number, frame))
        return Effects({edge.dpid: messages})

    def tick(self, now: float) -> Effects:
        """Periodic work: keep the edges' upstream routers resolved; end BGP hold-downs;
        replan the homenets whose damped paths are due to be trusted again."""
        effects = Effects()
        for edge in self.registry.edges.values():
            effects.merge(self._resolve_gateways(edge, now))
        self._age_tables(now)
        for dpid, port, frame in self.autoconf.adverts(now, self._spec_of, self._programmed_lan_ports):
            effects.add(dpid, [ofmsg.packet_out(port, frame)])
        while self._holddowns and self._holddowns[0][0] <= now:
            _, name = heapq.heappop(self._holddowns)
            if name in self.homenets:
                effects.bgp.update(self._announce(self.homenets[name], now))
        while self._damping_due and self._damping_due[0][0] <= now:
            due, name = heapq.heappop(self._damping_due)
            if self._damping_wake.get(name) != due:
                continue  # superseded by an earlier wake, which replanned and re-armed
            del self._damping_wake[name]
            if name in self.homenets:
                effects.merge(self._replan(self.homenets[name], now))
        return effects

    def _arm_ageing(self, dpid: int, now: float) -> None:
        if dpid not in self._ageing_armed:
            self._ageing_armed.add(dpid)
            heapq.heappush(self._ageing, (now + AGEING_CHECK_S, dpid))

    def _age_tables(self, now: float) -> None:
        """Forget old solicitation times and claim records of the switches that are due."""
        while self._ageing and self._ageing[0][0] <= now:
            _, dpid = heapq.heappop(self._ageing)
            self._ageing_armed.discard(dpid)
            switch = self.switches.get(dpid)
            solicited = switch.solicited if switch is not None else {}
            while solicited and now - next(iter(solicited.values())) >= GATEWAY_REFRESH_S:
                del solicited[next(iter(solicited))]
            guard = self.claims.get(dpid)
            if guard is not None:
                guard.expire(now)
            if solicited or (guard is not None and guard.tracked):
                self._arm_ageing(dpid, now)

    # --- policy -----------------------------------------------------------------------------

    def set_policy(self, homenet: str, body: object, now: float) -> tuple[Policy, Effects]:
        """Validate and apply a homenet's policy. FieldError (nothing changed) if it is bad."""
        state = self.homenets[homenet]
        policy = parse_policy(body, state.spec)
        return policy, self.apply_policy(homenet, policy, now)

    def apply_policy(self, homenet: str, policy: Policy, now: float) -> Effects:
        state = self.homenets[homenet]
        old = state.policy
        state.policy = policy
        LOG.info("%s: policy changed (%d classes)", homenet, len(policy.classes))
        try:
            self._schedule_probes(state, now)
            return self._replan(state, now)
        except Exception:
            state.policy = old  # a compile bug must not leave a half-applied policy
            self._schedule_probes(state, now)
            self._replan(state, now)
            raise

    # --- probes -----------------------------------------------------------------------------

    def probe_tick(self, now: float) -> Effects:
        """Send the probes that are due (within the budget); judge the SLAs they inform."""
        effects = Effects()
        for path in self.prober.due(now):
            state = self.homenets.get(path.homenet)
            if state is None:
                continue
            edge = self.registry.edge(path.edge)
            switch = self.switches.get(edge.dpid)
            uplink = state.spec.uplink(path.uplink)
            port = switch.ports.get(edge_tunnel_port(uplink)) if switch else None
            if switch is None or not switch.reconciled or port is None or uplink.address is None:
                continue
            sequence = self.tracker.next_sequence(path)
            template = state.probe_templates.get(path)
            if template is None:
                template = state.probe_templates[path] = ProbeTemplate(
                    state.path_ids[path], edge.internet_mac, state.spec.gateway_mac, str(edge.internet_ipv4.ip),
                    str(state.spec.lan_ipv4.ip))
            frame = template.frame(sequence, int(now * 1e9))
            self.tracker.sent(path, sequence, now)
            way = tunnel_exit(state.spec, uplink, port.number)
            effects.add(edge.dpid, [ofmsg.packet_out(port.number, frame, way.actions)])
            if self.prober.sla.get(path):
                self._to_judge.add(path.homenet)
        return effects.merge(self._judge_sla(now))

    def _probe_reply(self, dpid: int, in_port: int, tunnel_id: int | None, data: bytes, now: float) -> Effects:
        """A reflected probe counts only on its own path's tunnel port: a box can reach the
        controller only through its own tunnels, so it cannot speak for another's path."""
        probe = parse_probe(data)
        path = self.path_by_id.get(probe.path_id) if probe is not None else None
        if probe is None or path is None or self._probe_port(path) != (dpid, in_port, tunnel_id):
            self.ignored_packets += 1
            return Effects()
        self.tracker.received(path, probe.sequence, now)
        return Effects()

    def _probe_port(self, path: TunnelPath) -> tuple[int, int, int] | None:
        """(edge dpid, port number, VXLAN key) where the path's probes go out and come back
        (the edge admits them only from the box's own address)."""
        state = self.homenets.get(path.homenet)
        edge = self.registry.edge(path.edge)
        switch = self.switches.get(edge.dpid)
        if state is None or switch is None:
            return None
        port = switch.ports.get(edge_tunnel_port(state.spec.uplink(path.uplink)))
        return (edge.dpid, port.number, state.spec.id) if port is not None else None

    def path_stats(self, path: TunnelPath, now: float) -> PathStats:
        return self.tracker.stats(path, now)

    def _judge_sla(self, now: float) -> Effects:
        """Judge the homenets whose sla paths were probed since the last tick."""
        judged, self._to_judge = self._to_judge, set()
        moved = set()
        for name in judged:
            state = self.homenets.get(name)
            if state is None:
                continue
            for key, thresholds in state.sla_rules():
                self.judge.update(key, self.tracker.stats(key[2], now), thresholds, now)
        for change in self.judge.pop_changes():
            class_name, direction, path = change.key
            LOG.info("%s %s %s: path %s %s (%s)", path.homenet, class_name, direction, path,
                     "meets its SLA again" if change.usable else "breaks its SLA", change.reason)
            moved.add(path.homenet)
        effects = Effects()
        for name in moved:
            if name in self.homenets:
                effects.merge(self._replan(self.homenets[name], now))
        return effects

    # --- BGP ----------------------------------------------------------------------------------

    def bgp_desired(self) -> dict[str, dict[str, Route]]:
        """Everything announced now, per neighbor (for a speaker that starts or restarts)."""
        desired: dict[str, dict[str, Route]] = {str(n.address): {} for edge in self.registry.edges.values()
                                                for n in edge.bgp_neighbors}
        for prefix, routes in self.bgp_routes.items():
            for neighbor, route in routes.items():
                desired[neighbor][prefix] = route
        return desired

    def announced_at(self, homenet: str) -> list[str]:
        return sorted(self.homenets[homenet].announcements.announced)

    # --- counters -----------------------------------------------------------------------------

    def counted_switches(self) -> list[int]:
        """Switches whose port counters the API reports (MSPMBs and edges)."""
        return [dpid for dpid, switch in self.switches.items()
                if switch.reconciled and (role := self.role(dpid)) is not None and role.kind is not Kind.UNDERLAY]

    def port_counters(self, dpid: int, counters: dict[int, PortCounters]) -> None:
        for port, value in counters.items():
            self.counters[(dpid, port)] = value

    # --- status -------------------------------------------------------------------------------

    def plan(self, homenet: str) -> PathPlan:
        return self.homenets[homenet].plan



def _may_solicit(switch: SwitchState, target: str, now: float, interval: float = SOLICIT_INTERVAL_S) -> bool:
    solicited = switch.solicited
    last = solicited.get(target)
    if last is not None and now - last < interval:
        return False
    solicited.pop(target, None)  # re-inserted below: the dict stays oldest first
    while len(solicited) >= MAX_SOLICITING and now - next(iter(solicited.values())) >= interval:
        del solicited[next(iter(solicited))]
    if len(solicited) >= MAX_SOLICITING:
        return False  # a flood of unknown destinations: each waits its turn
    solicited[target] = now
    return True


def _port_text(port: PortState | None) -> str:
    if port is None:
        return "absent"
    return f"#{port.number} {'live' if port.live else 'down'}"


def _lan_interface(homenet: Homenet) -> RouterInterface:
    return RouterInterface(homenet.gateway_mac, homenet.lan_ipv4, homenet.lan_ipv6, proxy=True,
                           link_local=link_local(homenet.gateway_mac) if homenet.lan_ipv6 else None)


def _holder_check(switch: SwitchState) -> Callable[[ipaddress.IPv4Address, str], bool]:
    """Whether another MAC holds an address on this MSPMB (a static host): not to be leased."""
    def in_use(ip: ipaddress.IPv4Address, mac: str) -> bool:
        flow = switch.neighbors.get(str(ip))
        holder = binding_of(flow) if flow is not None else None
        return holder is not None and holder[0] != mac.lower()
    return in_use


def _internet_interface(edge: Edge) -> RouterInterface:
    return RouterInterface(edge.internet_mac, edge.internet_ipv4, edge.internet_ipv6)
