"""The controller's decisions, free of Ryu's event loop.

Each method takes an event (with the current time passed in) and returns the OpenFlow
messages to send, keyed by datapath id. The Ryu app only translates events and sends.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import ofmsg
from .announce import AnnouncementPlanner, Desired
from .choice import EGRESS, INGRESS, DirectionChoice, choose
from .config import Edge, Homenet, MspConfig, edge_tunnel_port
from .flows.common import SwitchProgram
from .flows.edge import default_route_flow, edge_program
from .flows.mspmb import host_flow, mspmb_program
from .flows.underlay import underlay_program
from .neighbors import RouterInterface, destination_of, handle_frame, solicit
from .paths import PathPlan, TunnelPath, plan_all
from .pipeline import EDGE, MSPMB, MSPMB_DELIVER, UNDERLAY, Pipeline
from .policy import SLA, Policy, default_policy, parse_policy
from .probe_packet import build_probe, parse_probe
from .probes import PathStats, ProbeTracker, SlaJudge, SlaThresholds
from .reconcile import ReportedFlow, reconcile, transition

Messages = dict[int, list[Any]]
LOG = logging.getLogger("msp.core")

HOST_IDLE_TIMEOUT_S = 600  # a silent host's entry ages out; the next packet re-resolves it
SOLICIT_INTERVAL_S = 1.0  # at most one ARP/NS per unresolved address per second
GATEWAY_REFRESH_S = 30.0  # re-ask the upstream router even when its MAC is known
PROBE_WINDOW_S = 5.0  # RTT, jitter and loss are estimated over this sliding window
PROBE_TIMEOUT_S = 1.0  # a probe unanswered this long is lost


@dataclass(frozen=True)
class PortState:
    number: int
    live: bool


@dataclass(frozen=True)
class Role:
    kind: str  # "mspmb", "edge", "underlay"
    name: str  # homenet, edge, or "<owner>/<bridge>" for underlays
    pipeline: Pipeline


@dataclass
class _Pending:
    """Stats replies collected while a (re)connected switch is being reconciled."""

    flows: list[ReportedFlow] = field(default_factory=list)
    groups: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    flows_done: bool = False
    groups_done: bool = False


@dataclass(frozen=True)
class PathChange:
    at: float
    homenet: str
    direction: str
    old: str | None
    new: str | None
    traffic_class: str = "default"


@dataclass
class PortCounters:
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0


def _merge(*parts: Messages) -> Messages:
    merged: Messages = collections.defaultdict(list)
    for part in parts:
        for dpid, messages in part.items():
            merged[dpid].extend(messages)
    return {dpid: messages for dpid, messages in merged.items() if messages}


class MspCore:
    def __init__(self, config: MspConfig) -> None:
        self.config = config
        self.roles = self._roles(config)
        self.ports: dict[int, dict[str, PortState]] = {}
        self.installed: dict[int, SwitchProgram] = {}  # switches we have reconciled
        self.pending: dict[int, _Pending] = {}
        self.neighbors: dict[tuple[int, str], ofmsg.Flow] = {}
        self.solicited: dict[tuple[int, str], float] = {}
        # Learned entries a switch already held when we (re)connected: not sent again.
        self.present_learned: dict[int, set[int]] = {}
        self.plans: dict[str, PathPlan] = plan_all(config, {})
        self.policies: dict[str, Policy] = {h.name: default_policy(h) for h in config.homenets}
        self.tracker: ProbeTracker[TunnelPath] = ProbeTracker(PROBE_WINDOW_S, PROBE_TIMEOUT_S)
        self.judge: SlaJudge[tuple[str, str, TunnelPath]] = SlaJudge(silence_s=PROBE_TIMEOUT_S)
        self.path_ids = {path: index for index, path in
                         enumerate(p for plan in self.plans.values() for p in plan.paths)}
        self.counters: dict[tuple[int, int], PortCounters] = {}
        self.choices: dict[str, dict[str, tuple[DirectionChoice, ...]]] = {}
        self._update_choices(0.0)
        self.announcements = AnnouncementPlanner(config)
        self.path_changes: collections.deque[PathChange] = collections.deque(maxlen=1000)
        self.ignored_packets = 0

    # --- roles and desired state ---------------------------------------------------------

    @staticmethod
    def _roles(config: MspConfig) -> dict[int, Role]:
        roles = {}
        for edge in config.edges:
            roles[edge.dpid] = Role("edge", edge.name, EDGE)
            roles[edge.underlay_dpid] = Role("underlay", f"{edge.name}/{edge.underlay_bridge}", UNDERLAY)
        for homenet in config.homenets:
            roles[homenet.dpid] = Role("mspmb", homenet.name, MSPMB)
            for uplink in homenet.uplinks:
                roles[uplink.underlay_dpid] = Role("underlay", f"{homenet.name}/{uplink.bridge}", UNDERLAY)
        return roles

    def _port_numbers(self, dpid: int) -> dict[str, int]:
        return {name: port.number for name, port in self.ports.get(dpid, {}).items()}

    def desired(self, dpid: int) -> SwitchProgram:
        role = self.roles[dpid]
        ports = self._port_numbers(dpid)
        if role.kind == "mspmb":
            program = mspmb_program(self.config, self.config.homenet(role.name), ports,
                                    self.choices[role.name][EGRESS])
        elif role.kind == "edge":
            ingress = {name: choices[INGRESS] for name, choices in self.choices.items()}
            program = edge_program(self.config, self.config.edge(role.name), ports, ingress)
        else:
            program = self._underlay_program(dpid, ports)
        for flow in program.flows:
            role.pipeline.check(flow)
        return program

    def _underlay_program(self, dpid: int, ports: dict[str, int]) -> SwitchProgram:
        for edge in self.config.edges:
            if edge.underlay_dpid == dpid:
                if edge.underlay_port not in ports:
                    return SwitchProgram()
                return underlay_program(ports[edge.underlay_port], None,
                                        [a.ip for a in edge.tunnel_addresses])
        for homenet in self.config.homenets:
            for uplink in homenet.uplinks:
                if uplink.underlay_dpid == dpid:
                    if uplink.port not in ports:
                        return SwitchProgram()
                    edges = [self.config.edge(name) for name in homenet.edges]
                    return underlay_program(ports[uplink.port], [e.tunnel_ip(uplink.slot) for e in edges],
                                            dhcp_client=True)
        raise KeyError(dpid)

    # --- liveness and paths -------------------------------------------------------------

    def _edges_up(self) -> dict[str, bool]:
        """An edge whose switch is not connected is not used (and not announced)."""
        return {edge.name: edge.dpid in self.ports for edge in self.config.edges}

    def _liveness(self) -> dict[tuple[int, str], bool | None]:
        return {(dpid, name): port.live for dpid, ports in self.ports.items() for name, port in ports.items()}

    def _replan(self, now: float) -> Messages:
        """Recompute every homenet's paths and move reconciled switches to the new state."""
        self.plans = plan_all(self.config, self._liveness(), self._edges_up())
        self._update_choices(now)
        messages: Messages = {}
        for dpid, installed in list(self.installed.items()):
            wanted = self.desired(dpid)
            if wanted != installed:
                messages[dpid] = transition(installed, wanted)
                self.installed[dpid] = wanted
        return messages

    def _usable(self, traffic_class: str, direction: str, path: TunnelPath) -> bool:
        return self.judge.usable((traffic_class, direction, path))

    def _update_choices(self, now: float) -> None:
        """Each class's paths from policy, liveness and SLA verdicts; log what moved."""
        for name, plan in self.plans.items():
            old = self.choices.get(name, {})
            new = {direction: choose(self.policies[name], plan, direction, self._usable)
                   for direction in (EGRESS, INGRESS)}
            self.choices[name] = new
            for direction, choices in new.items():
                before = {c.name: c.describe_active() for c in old.get(direction, ())}
                for choice in choices:
                    if choice.name in before or not old:
                        self._record_change(now, name, choice.name, direction,
                                            before.get(choice.name, "(start)"), choice.describe_active())

    def _record_change(self, now: float, homenet: str, traffic_class: str, direction: str,
                       old: str | None, new: str | None) -> None:
        if old == new or old == "(start)" and new is not None:
            return
        self.path_changes.append(PathChange(now, homenet, direction, old, new, traffic_class))
        if new is None:
            LOG.warning("%s %s %s: no live path left (was %s)", homenet, traffic_class, direction, old)
        else:
            LOG.info("%s %s %s now via %s (was %s)", homenet, traffic_class, direction, new, old)

    # --- switch events --------------------------------------------------------------------

    def switch_up(self, dpid: int, ports: dict[str, PortState], now: float) -> Messages:
        """A switch connected and described its ports: read its tables to reconcile them."""
        if dpid not in self.roles:
            LOG.warning("datapath %016x is not in the config: ignored", dpid)
            return {}
        LOG.info("%s %s (%016x) connected with %d ports", self.roles[dpid].kind, self.roles[dpid].name,
                 dpid, len(ports))
        self.ports[dpid] = dict(ports)
        self.installed.pop(dpid, None)
        self.pending[dpid] = _Pending()
        return _merge(self._replan(now), {dpid: [ofmsg.flow_stats_request(), ofmsg.group_desc_request()]})

    def switch_down(self, dpid: int, now: float) -> Messages:
        if dpid not in self.roles:
            return {}
        LOG.warning("%s %s (%016x) disconnected", self.roles[dpid].kind, self.roles[dpid].name, dpid)
        self.ports.pop(dpid, None)
        self.installed.pop(dpid, None)
        self.pending.pop(dpid, None)
        self.present_learned.pop(dpid, None)
        for key in [k for k in self.neighbors if k[0] == dpid]:
            del self.neighbors[key]
        return self._replan(now)

    def flow_stats(self, dpid: int, flows: Iterable[ReportedFlow], more: bool, now: float) -> Messages:
        pending = self.pending.get(dpid)
        if pending is None:
            return {}
        pending.flows.extend(flows)
        pending.flows_done = not more
        return self._maybe_reconcile(dpid, now)

    def group_desc(self, dpid: int, groups: dict[int, tuple[Any, ...]], more: bool, now: float) -> Messages:
        pending = self.pending.get(dpid)
        if pending is None:
            return {}
        pending.groups.update(groups)
        pending.groups_done = not more
        return self._maybe_reconcile(dpid, now)

    def _maybe_reconcile(self, dpid: int, now: float) -> Messages:
        pending = self.pending[dpid]
        if not (pending.flows_done and pending.groups_done):
            return {}
        del self.pending[dpid]
        self.present_learned[dpid] = {flow.cookie for flow in pending.flows if flow.is_learned}
        wanted = self.desired(dpid)
        messages = reconcile(wanted, pending.flows, pending.groups)
        self.installed[dpid] = wanted
        LOG.info("%s %s reconciled: %d messages (%d flows and %d groups wanted, %d flows found)",
                 self.roles[dpid].kind, self.roles[dpid].name, len(messages), len(wanted.flows),
                 len(wanted.groups), len(pending.flows))
        return _merge({dpid: messages}, self.tick(now))

    def port_status(self, dpid: int, name: str, port: PortState | None, now: float) -> Messages:
        """A port was added or changed (port given) or deleted (port None)."""
        if dpid not in self.ports:
            return {}
        before = self.ports[dpid].get(name)
        if port is None:
            self.ports[dpid].pop(name, None)
        else:
            self.ports[dpid][name] = port
        if before != port:
            LOG.info("%s %s port %s: %s -> %s", self.roles[dpid].kind, self.roles[dpid].name, name,
                     _port_text(before), _port_text(port))
        return self._replan(now)

    # --- neighbours ------------------------------------------------------------------------

    def _interface(self, dpid: int, in_port: int) -> tuple[RouterInterface, Homenet | Edge] | None:
        role = self.roles.get(dpid)
        ports = self._port_numbers(dpid)
        if role is None or role.kind == "underlay":
            return None
        if role.kind == "mspmb":
            homenet = self.config.homenet(role.name)
            if in_port not in {ports.get(name) for name in homenet.lan_ports}:
                return None
            return _lan_interface(homenet), homenet
        edge = self.config.edge(role.name)
        if ports.get(edge.internet_port) != in_port:
            return None
        return _internet_interface(edge), edge

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes, now: float) -> Messages:
        if dpid not in self.installed:
            return {}
        role = self.roles[dpid]
        if role.kind == "mspmb" and table_id == MSPMB_DELIVER:
            return self._resolve_destination(dpid, data, now)
        if role.kind == "edge" and in_port in self._tunnel_ports(dpid):
            return self._probe_reply(data, now)
        found = self._interface(dpid, in_port)
        if found is None:
            self.ignored_packets += 1
            return {}
        iface, owner = found
        event = handle_frame(iface, data)
        if event.ignored:
            self.ignored_packets += 1
            LOG.debug("%s %s port %d: ignored packet: %s", role.kind, role.name, in_port, event.ignored)
        messages: list[Any] = []
        if event.reply is not None:
            messages.append(ofmsg.packet_out(in_port, event.reply))
        if event.learned is not None:
            messages += self._learn(dpid, owner, in_port, *event.learned)
        return {dpid: messages} if messages else {}

    def _learn(self, dpid: int, owner: Homenet | Edge, port: int, ip: str, mac: str) -> list[Any]:
        if isinstance(owner, Homenet):
            flows = [host_flow(owner, ip, mac, port, HOST_IDLE_TIMEOUT_S)]
        else:
            address = ipaddress.ip_address(ip)
            if address not in (owner.internet_gateway_ipv4, owner.internet_gateway_ipv6):
                return []
            flows = [default_route_flow(owner, port, mac, ipv6=address.version == 6)]
        messages = []
        for flow in flows:
            if self.neighbors.get((dpid, ip)) != flow:
                LOG.info("%s: neighbour %s is %s on port %d", owner.name, ip, mac, port)
                self.neighbors[(dpid, ip)] = flow
                if flow.cookie not in self.present_learned.get(dpid, set()):
                    messages.append(ofmsg.flow_add(flow))
        return messages

    def flow_removed(self, dpid: int, cookie: int) -> None:
        """A learned entry aged out: forget it so that the next sighting installs it again."""
        for key in [k for k, flow in self.neighbors.items() if k[0] == dpid and flow.cookie == cookie]:
            del self.neighbors[key]
        self.present_learned.get(dpid, set()).discard(cookie)

    def _resolve_destination(self, dpid: int, data: bytes, now: float) -> Messages:
        destination = destination_of(data)
        homenet = self.config.homenet(self.roles[dpid].name)
        if destination is None or not self._may_solicit(dpid, destination, now):
            return {}
        frame = solicit(_lan_interface(homenet), destination)
        if frame is None:
            return {}
        ports = self._port_numbers(dpid)
        return {dpid: [ofmsg.packet_out(ports[name], frame) for name in homenet.lan_ports if name in ports]}

    def _may_solicit(self, dpid: int, target: str, now: float, interval: float = SOLICIT_INTERVAL_S) -> bool:
        last = self.solicited.get((dpid, target))
        if last is not None and now - last < interval:
            return False
        self.solicited[(dpid, target)] = now
        return True

    def tick(self, now: float) -> Messages:
        """Periodic work: keep the edges' upstream routers resolved."""
        messages: Messages = {}
        for edge in self.config.edges:
            ports = self._port_numbers(edge.dpid)
            if edge.dpid not in self.installed or edge.internet_port not in ports:
                continue
            iface = _internet_interface(edge)
            for gateway in (edge.internet_gateway_ipv4, edge.internet_gateway_ipv6):
                if gateway is None:
                    continue
                known = (edge.dpid, str(gateway)) in self.neighbors
                interval = GATEWAY_REFRESH_S if known else SOLICIT_INTERVAL_S
                if self._may_solicit(edge.dpid, str(gateway), now, interval):
                    frame = solicit(iface, str(gateway))
                    if frame is not None:
                        messages.setdefault(edge.dpid, []).append(
                            ofmsg.packet_out(ports[edge.internet_port], frame))
        return messages

    # --- policy ---------------------------------------------------------------------------

    def set_policy(self, homenet: str, body: object, now: float) -> tuple[Policy, Messages]:
        """Validate and apply a homenet's policy. PolicyError (nothing changed) if it is bad."""
        policy = parse_policy(body, self.config.homenet(homenet))
        old = self.policies[homenet]
        self.policies[homenet] = policy
        LOG.info("%s: policy changed (%d classes)", homenet, len(policy.classes))
        try:
            return policy, self._replan(now)
        except Exception:
            self.policies[homenet] = old  # a compile bug must not leave a half-applied policy
            self._replan(now)
            raise

    # --- probes -----------------------------------------------------------------------------

    def _tunnel_ports(self, dpid: int) -> set[int]:
        ports = self._port_numbers(dpid)
        edge = self.config.edge(self.roles[dpid].name)
        return {ports[edge_tunnel_port(h, u)] for h in self.config.homenets if edge.name in h.edges
                for u in h.uplinks if edge_tunnel_port(h, u) in ports}

    def probe_tick(self, now: float) -> Messages:
        """Send one probe down every tunnel path whose edge is programmed; judge SLAs."""
        messages: Messages = {}
        for path, path_id in self.path_ids.items():
            homenet = self.config.homenet(path.homenet)
            edge = self.config.edge(path.edge)
            port = self._port_numbers(edge.dpid).get(edge_tunnel_port(homenet, homenet.uplink(path.uplink)))
            if edge.dpid not in self.installed or port is None:
                continue
            sequence = self.tracker.next_sequence(path)
            frame = build_probe(path_id, sequence, int(now * 1e9), edge.internet_mac, homenet.gateway_mac,
                                str(edge.internet_ipv4.ip), str(homenet.lan_ipv4.ip))
            self.tracker.sent(path, sequence, now)
            messages.setdefault(edge.dpid, []).append(ofmsg.packet_out(port, frame))
        return _merge(messages, self._judge_sla(now))

    def _probe_reply(self, data: bytes, now: float) -> Messages:
        probe = parse_probe(data)
        paths = {index: path for path, index in self.path_ids.items()}
        if probe is None or probe.path_id not in paths:
            self.ignored_packets += 1
            return {}
        self.tracker.received(paths[probe.path_id], probe.sequence, now)
        return {}

    def path_stats(self, path: TunnelPath, now: float) -> PathStats:
        return self.tracker.stats(path, now)

    def _judge_sla(self, now: float) -> Messages:
        for name, policy in self.policies.items():
            for class_name, direction, rule in policy.direction_policies():
                if rule.mode != SLA:
                    continue
                thresholds = SlaThresholds(rule.max_rtt_ms, rule.max_loss_pct, rule.max_jitter_ms,
                                           rule.hysteresis_pct, rule.recover_s)
                for path in self.plans[name].paths:
                    self.judge.update((class_name, direction, path), self.tracker.stats(path, now), thresholds, now)
        changes = self.judge.pop_changes()
        for change in changes:
            class_name, direction, path = change.key
            LOG.info("%s %s %s: path %s %s (%s)", path.homenet, class_name, direction, path,
                     "meets its SLA again" if change.usable else "breaks its SLA", change.reason)
        return self._replan(now) if changes else {}

    # --- BGP ---------------------------------------------------------------------------------

    def bgp_desired(self, now: float) -> Desired:
        """What each upstream BGP neighbour should hear from us now."""
        # Announce only from an edge that is programmed, not merely connected.
        programmed = {edge.name: edge.dpid in self.installed for edge in self.config.edges}
        known_live = plan_all(self.config, self._liveness(), programmed, unknown_is_live=False)
        return self.announcements.plan(known_live, programmed, now)

    def announced_at(self, homenet: str) -> list[str]:
        return sorted(edge for name, edge in self.announcements.announced if name == homenet)

    # --- counters -----------------------------------------------------------------------------

    def counted_switches(self) -> list[int]:
        """Switches whose port counters the API reports (MSPMBs and edges)."""
        return [dpid for dpid, role in self.roles.items() if role.kind != "underlay" and dpid in self.installed]

    def port_counters(self, dpid: int, counters: dict[int, PortCounters]) -> None:
        for port, value in counters.items():
            self.counters[(dpid, port)] = value

    # --- status -----------------------------------------------------------------------------

    def switch_status(self) -> dict[str, dict[str, Any]]:
        """Each configured switch by datapath id (hex): role, name, connected, reconciled."""
        return {f"{dpid:016x}": {"role": role.kind, "name": role.name, "connected": dpid in self.ports,
                                 "reconciled": dpid in self.installed}
                for dpid, role in self.roles.items()}


def _port_text(port: PortState | None) -> str:
    if port is None:
        return "absent"
    return f"#{port.number} {'live' if port.live else 'down'}"


def _lan_interface(homenet: Homenet) -> RouterInterface:
    return RouterInterface(homenet.gateway_mac, homenet.lan_ipv4, homenet.lan_ipv6, proxy=True)


def _internet_interface(edge: Edge) -> RouterInterface:
    return RouterInterface(edge.internet_mac, edge.internet_ipv4, edge.internet_ipv6)
