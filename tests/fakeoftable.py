"""A fake OpenFlow 1.3 switch for unit tests: "where does this packet go?"

FakeSwitch takes the Ryu message objects the controller builds (OFPFlowMod, OFPGroupMod,
OFPBarrierRequest, OFPPacketOut, all with datapath=None), keeps flow tables and groups, and
runs a packet (a dict of OXM field names, as Ryu spells them in OFPMatch kwargs) through
the pipeline. FakeNetwork joins several switches with links and traces a packet across them.

The model is strict where Open vSwitch is strict, so controller bugs show up in tests:
flows that break OXM prerequisites, goto_table backwards, equal-priority flows that both
match a packet, a meter instruction naming a meter the switch does not hold, and unknown
actions or instructions all raise. Meters are kept (OFPMeterMod) but never drop a packet.

Conventions of the packet dict:
  - MACs are "aa:bb:cc:dd:ee:ff", IPs are strings, everything else is an int.
  - vlan_vid is the plain 12-bit VID and is absent for untagged packets (matches and
    set_field use the OpenFlow encoding with OFPVID_PRESENT, as Ryu does).
  - ttl is the IPv4 TTL / IPv6 hop limit (64 if absent), decremented by dec_ttl.
  - metadata, if given, seeds the pipeline's metadata register (default 0); it is pipeline
    state, not a header, so it does not appear in Output.packet. Nicira registers (reg0..7,
    set_field and multipath) are pipeline state too, 0 when a packet enters a switch.
  - Hashing is modelled on what Open vSwitch hashes, not on its hash values: a select group
    (no selection method: OVS's default, dp_hash with a symmetric L4 hash) hashes the IP
    addresses, protocol and TCP/SCTP ports but never UDP ports; multipath hashes the fields
    its `fields` names.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

Packet = dict[str, object]
FieldMatch = tuple[int, int]  # (value, mask); value is already masked
NormalMatch = dict[str, FieldMatch]

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
DEFAULT_TTL = 64
MAX_GROUP_DEPTH = 16  # groups may chain to groups; deeper than this is a bug
VID_MASK = 0x0FFF

# Field name -> (kind, width in bits). Kind says how strings are turned into ints.
_FIELDS: dict[str, tuple[str, int]] = {
    "in_port": ("int", 32),
    "metadata": ("int", 64),
    "tunnel_id": ("int", 64),
    "tun_ipv4_src": ("ipv4", 32),
    "tun_ipv4_dst": ("ipv4", 32),
    "eth_dst": ("mac", 48),
    "eth_src": ("mac", 48),
    "eth_type": ("int", 16),
    "vlan_vid": ("int", 13),
    "vlan_pcp": ("int", 3),
    "ip_dscp": ("int", 6),
    "ip_ecn": ("int", 2),
    "ip_proto": ("int", 8),
    "ipv4_src": ("ipv4", 32),
    "ipv4_dst": ("ipv4", 32),
    "tcp_src": ("int", 16),
    "tcp_dst": ("int", 16),
    "udp_src": ("int", 16),
    "udp_dst": ("int", 16),
    "sctp_src": ("int", 16),
    "sctp_dst": ("int", 16),
    "icmpv4_type": ("int", 8),
    "icmpv4_code": ("int", 8),
    "arp_op": ("int", 16),
    "arp_spa": ("ipv4", 32),
    "arp_tpa": ("ipv4", 32),
    "arp_sha": ("mac", 48),
    "arp_tha": ("mac", 48),
    "ipv6_src": ("ipv6", 128),
    "ipv6_dst": ("ipv6", 128),
    "ipv6_flabel": ("int", 20),
    "icmpv6_type": ("int", 8),
    "icmpv6_code": ("int", 8),
    "ipv6_nd_target": ("ipv6", 128),
    "ipv6_nd_sll": ("mac", 48),
    "ipv6_nd_tll": ("mac", 48),
    **{f"reg{i}": ("int", 32) for i in range(8)},
}
_REGISTERS = frozenset(f"reg{i}" for i in range(8))
_TUNNEL_FIELDS = frozenset({"tunnel_id", "tun_ipv4_src", "tun_ipv4_dst"})

_IP = frozenset({ETH_IPV4, ETH_IPV6})
_V4, _V6, _ARP = frozenset({ETH_IPV4}), frozenset({ETH_IPV6}), frozenset({ETH_ARP})
Prerequisite = tuple[str, frozenset[int]]  # (field, allowed exact values)
# OXM prerequisites (OpenFlow 1.3 table 12). Every field of a match is checked, so the
# chain ipv6_nd_target -> icmpv6_type -> ip_proto -> eth_type is covered transitively.
_PREREQUISITES: dict[str, tuple[Prerequisite, ...]] = {
    **{f: (("eth_type", _V4),) for f in ("ipv4_src", "ipv4_dst")},
    **{f: (("eth_type", _V6),) for f in ("ipv6_src", "ipv6_dst", "ipv6_flabel")},
    **{f: (("eth_type", _ARP),) for f in ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")},
    **{f: (("eth_type", _IP),) for f in ("ip_proto", "ip_dscp", "ip_ecn")},
    **{f: (("ip_proto", frozenset({6})),) for f in ("tcp_src", "tcp_dst")},
    **{f: (("ip_proto", frozenset({17})),) for f in ("udp_src", "udp_dst")},
    **{f: (("ip_proto", frozenset({132})),) for f in ("sctp_src", "sctp_dst")},
    **{f: (("ip_proto", frozenset({1})), ("eth_type", _V4)) for f in ("icmpv4_type", "icmpv4_code")},
    **{f: (("ip_proto", frozenset({58})), ("eth_type", _V6)) for f in ("icmpv6_type", "icmpv6_code")},
    "ipv6_nd_target": (("icmpv6_type", frozenset({135, 136})),),
    "ipv6_nd_sll": (("icmpv6_type", frozenset({135})),),
    "ipv6_nd_tll": (("icmpv6_type", frozenset({136})),),
}

# Reserved output ports reported by name rather than number.
_NAMED_PORTS = {ofp.OFPP_CONTROLLER: "CONTROLLER", ofp.OFPP_LOCAL: "LOCAL"}


# ---------------------------------------------------------------------------- values


def _field_info(name: str) -> tuple[str, int]:
    if name not in _FIELDS:
        raise NotImplementedError(f"fake switch does not model OXM field {name!r}")
    return _FIELDS[name]


def _to_int(name: str, value: object) -> int:
    """An OXM value or mask as an int: MACs and IPs (strings) are parsed, ints pass."""
    kind, _ = _field_info(name)
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name}: unsupported value {value!r}")
    if kind == "mac":
        return int(value.replace(":", ""), 16)
    if kind in ("ipv4", "ipv6"):
        return int(ipaddress.ip_address(value))
    return int(value, 0)


def _normalize_field(name: str, user_value: object) -> FieldMatch:
    """A Ryu match value, plain or (value, mask), as (masked value, mask)."""
    _, width = _field_info(name)
    if isinstance(user_value, (tuple, list)):
        value, mask = _to_int(name, user_value[0]), _to_int(name, user_value[1])
    else:
        value, mask = _to_int(name, user_value), (1 << width) - 1
    return value & mask, mask


def _normalize_match(match: parser.OFPMatch | None) -> NormalMatch:
    if match is None:
        return {}
    return {name: _normalize_field(name, value) for name, value in match.items()}


def _packet_value(name: str, value: object) -> object:
    """A set_field value in the packet dict's conventions (canonical strings, plain VID)."""
    kind, _ = _field_info(name)
    number = _to_int(name, value)
    if name == "vlan_vid":
        return number & VID_MASK
    if kind == "mac":
        return ":".join(f"{number:012x}"[i : i + 2] for i in range(0, 12, 2))
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(number))
    if kind == "ipv6":
        return str(ipaddress.IPv6Address(number))
    return number


def _int_header(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an int, got {value!r}")
    return value


def _is_exact(fm: FieldMatch, name: str) -> bool:
    return fm[1] == (1 << _field_info(name)[1]) - 1


def _covers(general: NormalMatch, specific: NormalMatch) -> bool:
    """True if every packet matching `specific` also matches `general` (field-wise)."""
    for name, (value, mask) in general.items():
        if name not in specific:
            return False
        s_value, s_mask = specific[name]
        if mask & ~s_mask or (s_value & mask) != value:
            return False
    return True


def _overlaps(a: NormalMatch, b: NormalMatch) -> bool:
    """True if some packet could match both (fields in only one match don't constrain)."""
    for name in a.keys() & b.keys():
        (a_value, a_mask), (b_value, b_mask) = a[name], b[name]
        common = a_mask & b_mask
        if (a_value & common) != (b_value & common):
            return False
    return True


def _check_prerequisites(match: NormalMatch, fields: Iterable[str], what: str) -> None:
    """Raise ValueError, like OVS rejecting the flow, if a field lacks its prerequisites."""
    for name in fields:
        for needed, allowed in _PREREQUISITES.get(name, ()):
            present = match.get(needed)
            if present is None or not _is_exact(present, needed) or present[0] not in allowed:
                wanted = "/".join(hex(v) if needed == "eth_type" else str(v) for v in sorted(allowed))
                raise ValueError(f"{what} {name} needs {needed}={wanted} in the match")


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Output:
    """A packet leaving the switch."""

    port: int | str  # an OF port number, or "CONTROLLER" / "LOCAL"
    packet: Packet  # the packet's fields after all set_field/dec_ttl
    table_id: int  # table whose actions output it
    meters: tuple[int, ...] = ()  # the meters it passed, in order (they never drop here)


@dataclass(eq=False)  # flows compare by identity: two entries are never "the same flow"
class FakeFlow:
    """One flow entry; `match` is normalized to {field: (masked value, mask)}."""

    table_id: int
    priority: int
    match: NormalMatch
    instructions: list[object]
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    ofp_match: parser.OFPMatch | None = None  # the original Ryu object, for debugging

    def actions(self) -> list[object]:
        """Every action of the apply and write instructions."""
        return [
            action
            for inst in self.instructions
            if isinstance(inst, parser.OFPInstructionActions)
            for action in inst.actions
        ]

    def outputs_to_port(self, port: int) -> bool:
        return any(isinstance(a, parser.OFPActionOutput) and a.port == port for a in self.actions())

    def outputs_to_group(self, group_id: int) -> bool:
        return any(isinstance(a, parser.OFPActionGroup) and a.group_id == group_id for a in self.actions())

    @property
    def meter_id(self) -> int | None:
        """The meter this flow's packets pass, if any."""
        return next((i.meter_id for i in self.instructions if isinstance(i, parser.OFPInstructionMeter)), None)


@dataclass
class FakeMeter:
    """One meter entry, bands as the Ryu objects of the last add or modify."""

    meter_id: int
    flags: int
    bands: list[Any]


@dataclass
class FakeGroup:
    """One group entry, buckets as the Ryu OFPBucket objects of the last add or modify."""

    group_id: int
    type: int  # OFPGT_*
    buckets: list[parser.OFPBucket]


class _PacketDropped(Exception):
    """The packet (or this group bucket's copy of it) is dropped, e.g. its TTL expired."""


@dataclass
class _Context:
    """Per-packet pipeline state that is not a packet header."""

    in_port: int
    metadata: int = 0
    table_id: int = 0
    action_set: dict[object, object] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    registers: dict[str, int] = field(default_factory=dict)
    meters: list[int] = field(default_factory=list)


_KNOWN_ACTIONS = (
    parser.OFPActionOutput,
    parser.OFPActionSetField,
    parser.OFPActionDecNwTtl,
    parser.OFPActionGroup,
    parser.OFPActionPushVlan,
    parser.OFPActionPopVlan,
    parser.NXActionMultipath,
)


class FakeSwitch:
    """One OpenFlow 1.3 datapath: flow tables, groups and port liveness."""

    def __init__(self, dpid: int, ports: dict[int, bool] | None = None) -> None:
        self.dpid = dpid
        self._ports: dict[int, bool] = dict(ports or {})  # port_no -> live
        self._flows: list[FakeFlow] = []
        self._groups: dict[int, FakeGroup] = {}
        self._meters: dict[int, FakeMeter] = {}
        self.packet_outs: list[parser.OFPPacketOut] = []

    # ------------------------------------------------------------------ state

    @property
    def groups(self) -> dict[int, FakeGroup]:
        return dict(self._groups)

    @property
    def meters(self) -> dict[int, FakeMeter]:
        return dict(self._meters)

    def flows(self, table_id: int | None = None) -> list[FakeFlow]:
        """Flows of one table (or all), by table then descending priority."""
        chosen = [f for f in self._flows if table_id is None or f.table_id == table_id]
        return sorted(chosen, key=lambda f: (f.table_id, -f.priority))

    def set_port_live(self, port_no: int, live: bool) -> None:
        self._ports[port_no] = live

    def port_is_live(self, port_no: int) -> bool:
        return self._ports.get(port_no, False)

    # ------------------------------------------------------------------ messages

    def apply(self, msgs: Iterable[object]) -> None:
        """Apply controller messages in order, as the switch would."""
        for msg in msgs:
            if isinstance(msg, parser.OFPFlowMod):
                self._flow_mod(msg)
            elif isinstance(msg, parser.OFPGroupMod):
                self._group_mod(msg)
            elif isinstance(msg, parser.OFPMeterMod):
                self._meter_mod(msg)
            elif isinstance(msg, parser.OFPPacketOut):
                self.packet_outs.append(msg)
            elif not isinstance(msg, parser.OFPBarrierRequest):
                raise NotImplementedError(f"fake switch does not handle {type(msg).__name__}")

    def _flow_mod(self, mod: parser.OFPFlowMod) -> None:
        match = _normalize_match(mod.match)
        if mod.command == ofp.OFPFC_ADD:
            self._add_flow(mod, match)
        elif mod.command in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            self._modify_flows(mod, match, strict=mod.command == ofp.OFPFC_MODIFY_STRICT)
        elif mod.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            self._delete_flows(mod, match, strict=mod.command == ofp.OFPFC_DELETE_STRICT)
        else:
            raise ValueError(f"unknown flow_mod command {mod.command}")

    def _add_flow(self, mod: parser.OFPFlowMod, match: NormalMatch) -> None:
        if mod.table_id == ofp.OFPTT_ALL:
            raise ValueError("flow add with table_id OFPTT_ALL")
        _check_prerequisites(match, match, "match field")
        self._check_instructions(mod.table_id, match, mod.instructions)
        same_slot = [f for f in self._flows if f.table_id == mod.table_id and f.priority == mod.priority]
        if mod.flags & ofp.OFPFF_CHECK_OVERLAP:
            if any(f.match != match and _overlaps(f.match, match) for f in same_slot):
                raise ValueError(f"OFPFF_CHECK_OVERLAP: flow overlaps in table {mod.table_id}")
        # An identical table/priority/match replaces the old flow entirely.
        self._flows = [f for f in self._flows if not (f in same_slot and f.match == match)]
        self._flows.append(
            FakeFlow(
                table_id=mod.table_id,
                priority=mod.priority,
                match=match,
                instructions=list(mod.instructions),
                cookie=mod.cookie,
                idle_timeout=mod.idle_timeout,
                hard_timeout=mod.hard_timeout,
                flags=mod.flags,
                ofp_match=mod.match,
            )
        )

    def _modify_flows(self, mod: parser.OFPFlowMod, match: NormalMatch, strict: bool) -> None:
        # OpenFlow 1.3: modify changes instructions only, and adds nothing if nothing matches.
        for flow in self._selected_flows(mod, match, strict, filter_outputs=False):
            self._check_instructions(flow.table_id, flow.match, mod.instructions)
            flow.instructions = list(mod.instructions)

    def _delete_flows(self, mod: parser.OFPFlowMod, match: NormalMatch, strict: bool) -> None:
        doomed = self._selected_flows(mod, match, strict, filter_outputs=True)
        self._flows = [f for f in self._flows if f not in doomed]

    def _selected_flows(
        self, mod: parser.OFPFlowMod, match: NormalMatch, strict: bool, filter_outputs: bool
    ) -> list[FakeFlow]:
        """Flows a modify/delete applies to (OpenFlow 1.3 section 6.4)."""
        return [
            flow
            for flow in self._flows
            if (mod.table_id == ofp.OFPTT_ALL or flow.table_id == mod.table_id)
            and (flow.cookie & mod.cookie_mask) == (mod.cookie & mod.cookie_mask)
            and ((flow.priority == mod.priority and flow.match == match) if strict else _covers(match, flow.match))
            and (not filter_outputs or self._passes_out_filters(flow, mod))
        ]

    @staticmethod
    def _passes_out_filters(flow: FakeFlow, mod: parser.OFPFlowMod) -> bool:
        # Ryu defaults out_port/out_group to 0, not ANY: like OVS, that filters on port or
        # group 0 and so deletes nothing. Deletes must pass OFPP_ANY / OFPG_ANY.
        port_ok = mod.out_port == ofp.OFPP_ANY or flow.outputs_to_port(mod.out_port)
        group_ok = mod.out_group == ofp.OFPG_ANY or flow.outputs_to_group(mod.out_group)
        return port_ok and group_ok

    def _check_instructions(self, table_id: int, match: NormalMatch, instructions: Sequence[object]) -> None:
        for inst in instructions:
            if isinstance(inst, parser.OFPInstructionGotoTable):
                if inst.table_id <= table_id:
                    raise ValueError(f"goto_table {inst.table_id} from table {table_id}: must go forward")
            elif isinstance(inst, parser.OFPInstructionActions):
                self._check_actions(inst.actions)
                set_fields = [a.key for a in inst.actions if isinstance(a, parser.OFPActionSetField)]
                _check_prerequisites(match, set_fields, "set_field")
            elif isinstance(inst, parser.OFPInstructionMeter):
                if inst.meter_id not in self._meters:
                    raise ValueError(f"meter {inst.meter_id} is not installed (table {table_id})")
            elif not isinstance(inst, parser.OFPInstructionWriteMetadata):
                raise NotImplementedError(f"fake switch does not handle {type(inst).__name__}")

    @staticmethod
    def _check_actions(actions: Iterable[object]) -> None:
        for action in actions:
            if not isinstance(action, _KNOWN_ACTIONS):
                raise NotImplementedError(f"fake switch does not handle {type(action).__name__}")
            if isinstance(action, parser.OFPActionSetField):
                _field_info(action.key)

    def _group_mod(self, mod: parser.OFPGroupMod) -> None:
        if mod.command == ofp.OFPGC_DELETE:
            self._delete_group(mod.group_id)
            return
        exists = mod.group_id in self._groups
        if mod.command == ofp.OFPGC_ADD and exists:
            raise ValueError(f"group {mod.group_id} already exists")
        if mod.command == ofp.OFPGC_MODIFY and not exists:
            raise ValueError(f"group {mod.group_id} does not exist")
        if mod.command not in (ofp.OFPGC_ADD, ofp.OFPGC_MODIFY):
            raise ValueError(f"unknown group_mod command {mod.command}")
        if mod.type == ofp.OFPGT_INDIRECT and len(mod.buckets) != 1:
            raise ValueError(f"indirect group {mod.group_id} needs exactly one bucket")
        for bucket in mod.buckets:
            self._check_actions(bucket.actions)
        self._groups[mod.group_id] = FakeGroup(mod.group_id, mod.type, list(mod.buckets))

    def _meter_mod(self, mod: parser.OFPMeterMod) -> None:
        if not 1 <= mod.meter_id <= ofp.OFPM_MAX:
            raise ValueError(f"meter id {mod.meter_id} out of range")
        exists = mod.meter_id in self._meters
        if mod.command == ofp.OFPMC_DELETE:
            # OpenFlow: deleting a meter also deletes the flows that use it.
            if self._meters.pop(mod.meter_id, None) is not None:
                self._flows = [f for f in self._flows if f.meter_id != mod.meter_id]
            return
        if mod.command == ofp.OFPMC_ADD and exists:
            raise ValueError(f"meter {mod.meter_id} already exists")
        if mod.command == ofp.OFPMC_MODIFY and not exists:
            raise ValueError(f"meter {mod.meter_id} does not exist")
        if mod.command not in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY):
            raise ValueError(f"unknown meter_mod command {mod.command}")
        if not mod.bands:
            raise ValueError(f"meter {mod.meter_id} has no band")
        self._meters[mod.meter_id] = FakeMeter(mod.meter_id, mod.flags, list(mod.bands))

    def _delete_group(self, group_id: int) -> None:
        doomed = list(self._groups) if group_id == ofp.OFPG_ALL else [group_id]
        for gid in doomed:
            # OpenFlow: deleting a group also deletes the flows that forward to it.
            if self._groups.pop(gid, None) is not None:
                self._flows = [f for f in self._flows if not f.outputs_to_group(gid)]

    # ------------------------------------------------------------------ pipeline

    def process(self, in_port: int, packet: Mapping[str, object]) -> list[Output]:
        """Run a packet arriving on in_port through the tables; return where it leaves."""
        headers = dict(packet)
        ctx = _Context(in_port=in_port, metadata=_int_header(headers.pop("metadata", 0)))
        try:
            self._run_pipeline(headers, ctx)
        except _PacketDropped:
            pass  # outputs made before the drop have left already
        return ctx.outputs

    def _run_pipeline(self, headers: Packet, ctx: _Context) -> None:
        table_id: int | None = 0
        while table_id is not None:
            ctx.table_id = table_id
            flow = self._lookup(table_id, headers, ctx)
            if flow is None:
                return  # table miss: drop, the action set is discarded
            table_id = self._run_instructions(flow, headers, ctx)
        self._run_action_set(headers, ctx)

    def _lookup(self, table_id: int, headers: Packet, ctx: _Context) -> FakeFlow | None:
        matching = [f for f in self._flows if f.table_id == table_id and self._matches(f.match, headers, ctx)]
        if not matching:
            return None
        best = max(f.priority for f in matching)
        winners = [f for f in matching if f.priority == best]
        if len(winners) > 1:
            # OpenFlow leaves this undefined, so it is a controller bug.
            raise ValueError(f"table {table_id}: {len(winners)} flows of priority {best} match {headers}")
        return winners[0]

    def _matches(self, match: NormalMatch, headers: Packet, ctx: _Context) -> bool:
        for name, (value, mask) in match.items():
            actual = self._field_of_packet(name, headers, ctx)
            if actual is None or (actual & mask) != value:
                return False
        return True

    @staticmethod
    def _field_of_packet(name: str, headers: Packet, ctx: _Context) -> int | None:
        if name == "in_port":
            return ctx.in_port
        if name == "metadata":
            return ctx.metadata
        if name in _REGISTERS:
            return ctx.registers.get(name, 0)
        if name == "vlan_vid":  # OpenFlow encoding: OFPVID_NONE (0) when untagged
            vid = headers.get("vlan_vid")
            return 0 if vid is None else _to_int(name, vid) | ofp.OFPVID_PRESENT
        if name not in headers:
            return None
        return _to_int(name, headers[name])

    def _run_instructions(self, flow: FakeFlow, headers: Packet, ctx: _Context) -> int | None:
        """Execute a flow's instructions in spec order; return the goto table, if any."""
        by_type: dict[int | None, Any] = {getattr(inst, "type", None): inst for inst in flow.instructions}
        if flow.meter_id is not None:
            ctx.meters.append(flow.meter_id)  # OpenFlow runs the meter first
        apply = by_type.get(ofp.OFPIT_APPLY_ACTIONS)
        if apply is not None:
            self._run_actions(apply.actions, headers, ctx, depth=0)
        if ofp.OFPIT_CLEAR_ACTIONS in by_type:
            ctx.action_set.clear()
        write = by_type.get(ofp.OFPIT_WRITE_ACTIONS)
        for action in write.actions if write is not None else ():
            ctx.action_set[self._action_set_slot(action)] = action
        metadata = by_type.get(ofp.OFPIT_WRITE_METADATA)
        if metadata is not None:
            mask = metadata.metadata_mask
            ctx.metadata = (ctx.metadata & ~mask) | (metadata.metadata & mask)
        goto = by_type.get(ofp.OFPIT_GOTO_TABLE)
        return goto.table_id if goto is not None else None

    @staticmethod
    def _action_set_slot(action: object) -> object:
        # The action set holds one action per type, one set_field per field.
        if isinstance(action, parser.OFPActionSetField):
            return ("set_field", action.key)
        return type(action)

    def _run_action_set(self, headers: Packet, ctx: _Context) -> None:
        """Execute the action set in spec order: vlan, dec_ttl, set_field, then group or output."""
        actions = ctx.action_set.values()
        ordered = [a for a in actions if isinstance(a, parser.OFPActionPopVlan)]
        ordered += [a for a in actions if isinstance(a, parser.OFPActionPushVlan)]
        ordered += [a for a in actions if isinstance(a, parser.OFPActionDecNwTtl)]
        ordered += [a for a in actions if isinstance(a, parser.OFPActionSetField)]
        groups = [a for a in actions if isinstance(a, parser.OFPActionGroup)]
        # A group in the action set takes precedence over an output.
        ordered += groups or [a for a in actions if isinstance(a, parser.OFPActionOutput)]
        self._run_actions(ordered, headers, ctx, depth=0)

    def _run_actions(self, actions: Iterable[object], headers: Packet, ctx: _Context, depth: int) -> None:
        """Execute an action list on `headers` in place; raise _PacketDropped on a drop."""
        for action in actions:
            if isinstance(action, parser.OFPActionOutput):
                self._output(action.port, headers, ctx)
            elif isinstance(action, parser.OFPActionSetField) and action.key in _REGISTERS:
                ctx.registers[action.key] = _to_int(action.key, action.value)
            elif isinstance(action, parser.OFPActionSetField) and action.key == "in_port":
                ctx.in_port = action.value  # so that output may go back where it came from
            elif isinstance(action, parser.OFPActionSetField):
                headers[action.key] = _packet_value(action.key, action.value)
            elif isinstance(action, parser.NXActionMultipath):
                self._multipath(action, headers, ctx)
            elif isinstance(action, parser.OFPActionDecNwTtl):
                self._dec_ttl(headers)
            elif isinstance(action, parser.OFPActionGroup):
                self._run_group(action.group_id, headers, ctx, depth + 1)
            elif isinstance(action, parser.OFPActionPushVlan):
                headers["vlan_vid"] = 0  # a new tag; set_field gives it a VID
            elif isinstance(action, parser.OFPActionPopVlan):
                headers.pop("vlan_vid", None)
            else:
                raise NotImplementedError(f"fake switch does not handle {type(action).__name__}")

    @staticmethod
    def _multipath(action: Any, headers: Packet, ctx: _Context) -> None:
        """Write a link in [0, max_link] chosen by a hash of the fields into dst[ofs..]."""
        if action.fields not in _MULTIPATH_FIELDS:
            raise NotImplementedError(f"fake switch does not model multipath fields {action.fields}")
        if action.dst not in _REGISTERS:
            raise NotImplementedError(f"fake switch does not model multipath into {action.dst}")
        key = _l3l4_key(headers, udp_ports=_MULTIPATH_FIELDS[action.fields]), action.basis
        n_links = action.max_link + 1
        if action.algorithm == _NX_MP_ALG_MODULO_N:
            link = _stable_hash(key) % n_links
        elif action.algorithm == _NX_MP_ALG_HRW:
            link = max(range(n_links), key=lambda candidate: _stable_hash((key, candidate)))
        else:
            raise NotImplementedError(f"fake switch does not model multipath algorithm {action.algorithm}")
        ofs, nbits = action.ofs_nbits >> 6, (action.ofs_nbits & 0x3F) + 1
        if link >= 1 << nbits:
            raise ValueError(f"multipath link {link} does not fit {action.dst}[{ofs}..{ofs + nbits - 1}]")
        mask = ((1 << nbits) - 1) << ofs
        old = ctx.registers.get(action.dst, 0)
        ctx.registers[action.dst] = (old & ~mask) | (link << ofs)

    @staticmethod
    def _dec_ttl(headers: Packet) -> None:
        """Decrement the TTL, dropping the packet when it expires. OVS leaves non-IP alone."""
        if headers.get("eth_type") not in _IP:
            return
        ttl = _int_header(headers.get("ttl", DEFAULT_TTL))
        if ttl <= 1:
            raise _PacketDropped()
        headers["ttl"] = ttl - 1

    def _output(self, port: int, headers: Packet, ctx: _Context) -> None:
        for out_port in self._output_ports(port, ctx.in_port):
            ctx.outputs.append(Output(out_port, dict(headers), ctx.table_id, tuple(ctx.meters)))

    def _output_ports(self, port: int, in_port: int) -> list[int | str]:
        if port in _NAMED_PORTS:
            return [_NAMED_PORTS[port]]
        if port == ofp.OFPP_IN_PORT:
            return [in_port]
        if port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
            return [p for p in sorted(self._ports) if self._ports[p] and p != in_port]
        if port > ofp.OFPP_MAX:
            raise NotImplementedError(f"fake switch does not model output to reserved port {port:#x}")
        # OpenFlow drops output to the input port unless OFPP_IN_PORT is used; a port
        # known to be down loses the packet. Ports never declared are taken as up.
        if port == in_port or self._ports.get(port) is False:
            return []
        return [port]

    # ------------------------------------------------------------------ groups

    def _run_group(self, group_id: int, headers: Packet, ctx: _Context, depth: int) -> None:
        if depth > MAX_GROUP_DEPTH:
            raise ValueError(f"group chain deeper than {MAX_GROUP_DEPTH} at group {group_id}")
        group = self._groups.get(group_id)
        if group is None:
            return  # unknown group: drop
        for bucket in self._chosen_buckets(group, headers):
            try:
                self._run_actions(bucket.actions, dict(headers), ctx, depth)
            except _PacketDropped:
                pass  # only this bucket's copy is lost

    def _chosen_buckets(self, group: FakeGroup, headers: Packet) -> list[parser.OFPBucket]:
        if group.type in (ofp.OFPGT_ALL, ofp.OFPGT_INDIRECT):
            return list(group.buckets)
        if group.type == ofp.OFPGT_FF:
            live = [b for b in group.buckets if self._bucket_is_live(b, depth=0)]
            return live[:1]
        if group.type == ofp.OFPGT_SELECT:
            return self._select_bucket(group, headers)
        raise NotImplementedError(f"group type {group.type}")

    def _select_bucket(self, group: FakeGroup, headers: Packet) -> list[parser.OFPBucket]:
        """One bucket by a stable hash of the flow, as OVS's default (dp_hash) method does it:
        over addresses, protocol and TCP/SCTP ports, not UDP ports (symmetric L4).

        The hash picks among ALL weighted buckets, live or not, so a flow keeps its bucket
        while that bucket is live; only when it is not does the flow fall back to a live
        bucket (highest hash score among the live ones, weighted).
        """
        weighted = [b for b in group.buckets if b.weight > 0]
        if not weighted:
            return []
        point = _stable_hash(_l3l4_key(headers, udp_ports=False)) % sum(b.weight for b in weighted)
        for bucket in weighted:
            if point < bucket.weight:
                break
            point -= bucket.weight
        if self._bucket_is_live(bucket, depth=0):
            return [bucket]
        live = [b for b in weighted if self._bucket_is_live(b, depth=0)]
        if not live:
            return []
        key = _l3l4_key(headers, udp_ports=False)
        scores = {id(b): _stable_hash((key, index)) * b.weight for index, b in enumerate(live)}
        return [max(live, key=lambda b: scores[id(b)])]

    def _bucket_is_live(self, bucket: parser.OFPBucket, depth: int) -> bool:
        # A bucket that watches nothing is always live (as in OVS).
        if bucket.watch_port != ofp.OFPP_ANY and not self.port_is_live(bucket.watch_port):
            return False
        if bucket.watch_group != ofp.OFPG_ANY and not self._group_is_live(bucket.watch_group, depth + 1):
            return False
        return True

    def _group_is_live(self, group_id: int, depth: int) -> bool:
        if depth > MAX_GROUP_DEPTH:
            raise ValueError(f"watch_group chain deeper than {MAX_GROUP_DEPTH} at group {group_id}")
        group = self._groups.get(group_id)
        return group is not None and any(self._bucket_is_live(b, depth) for b in group.buckets)


# Nicira multipath (nicira-ext.h): fields -> whether UDP ports are hashed; algorithms.
_MULTIPATH_FIELDS = {1: False, 2: False, 3: True}  # symmetric_l4, symmetric_l3l4, symmetric_l3l4+udp
_NX_MP_ALG_MODULO_N, _NX_MP_ALG_HRW = 0, 2
_L4_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}


def _l3l4_key(headers: Packet, udp_ports: bool) -> tuple[object, ...]:
    """What OVS's symmetric L3/L4 hashes see: both addresses, the protocol and, for TCP and
    SCTP (and UDP if asked), both ports; either direction of a flow gives the same key."""
    eth_type = headers.get("eth_type")
    if eth_type not in _IP:
        return ("l2", eth_type, tuple(sorted(str(headers.get(f)) for f in ("eth_src", "eth_dst"))))
    family = "ipv4" if eth_type == ETH_IPV4 else "ipv6"
    addresses = tuple(sorted(str(headers.get(f"{family}_{end}")) for end in ("src", "dst")))
    protocol = headers.get("ip_proto")
    name = _L4_NAMES.get(protocol) if isinstance(protocol, int) else None
    ports: tuple[str, ...] = ()
    if name is not None and (name != "udp" or udp_ports):
        ports = tuple(sorted(str(headers.get(f"{name}_{end}")) for end in ("src", "dst")))
    return (eth_type, addresses, protocol, ports)


def _stable_hash(key: object) -> int:
    """A hash that is stable across runs (unlike hash() of strings)."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big")


# ---------------------------------------------------------------------------- network

PortRef = tuple[int, int]  # (dpid, port_no)


class FakeNetwork:
    """Several FakeSwitches joined by links, e.g. a tunnel port on one to a tunnel port on another."""

    MAX_HOPS = 32

    def __init__(self) -> None:
        self.switches: dict[int, FakeSwitch] = {}
        self._links: dict[PortRef, PortRef] = {}
        # A tunnel from a port of its own to a port shared by many tunnels (flow-based):
        # own end -> (shared end, key, own address, shared address), and back by
        # (shared end, key, own address) -> own end.
        self._tunnels_out: dict[PortRef, tuple[PortRef, int, str, str]] = {}
        self._tunnels_back: dict[tuple[int, int, int, str], PortRef] = {}

    def add_switch(self, sw: FakeSwitch) -> None:
        self.switches[sw.dpid] = sw

    def link(self, dpid_a: int, port_a: int, dpid_b: int, port_b: int) -> None:
        """A bidirectional link between two switch ports."""
        self._links[(dpid_a, port_a)] = (dpid_b, port_b)
        self._links[(dpid_b, port_b)] = (dpid_a, port_a)

    def tunnel(self, own: PortRef, shared: PortRef, key: int, own_address: str, shared_address: str) -> None:
        """A VXLAN tunnel between a port of its own (fixed key and remote) and a flow-based
        port: packets arrive there with tunnel_id, tun_ipv4_src and tun_ipv4_dst set, and
        reach the own end only when sent with the right key and destination address."""
        self._tunnels_out[own] = (shared, key, own_address, shared_address)
        self._tunnels_back[(shared[0], shared[1], key, own_address)] = own

    def _peer(self, dpid: int, out: Output) -> tuple[PortRef, Packet] | None:
        if not isinstance(out.port, int):
            return None
        packet = {k: v for k, v in out.packet.items() if k not in _TUNNEL_FIELDS}
        if (dpid, out.port) in self._tunnels_out:
            shared, key, own_address, shared_address = self._tunnels_out[(dpid, out.port)]
            return shared, {**packet, "tunnel_id": key, "tun_ipv4_src": own_address, "tun_ipv4_dst": shared_address}
        if any((dpid, out.port) == (k[0], k[1]) for k in self._tunnels_back):
            own = self._tunnels_back.get((dpid, out.port, _int_header(out.packet.get("tunnel_id", -1)),
                                          str(out.packet.get("tun_ipv4_dst", ""))))
            return (own, packet) if own is not None else None
        peer = self._links.get((dpid, out.port))
        return (peer, dict(out.packet)) if peer is not None else None

    def trace(self, dpid: int, in_port: int, packet: Mapping[str, object]) -> list[tuple[int, Output]]:
        """Follow a packet across links; return the (dpid, Output) pairs that leave the network.

        Outputs leave the network at ports with no link and at named ports (CONTROLLER).
        Raises ValueError on a forwarding loop or a path longer than MAX_HOPS.
        """
        return self._trace(dpid, in_port, dict(packet), path=())

    def _trace(self, dpid: int, in_port: int, packet: Packet, path: tuple[object, ...]) -> list[tuple[int, Output]]:
        state = (dpid, in_port, tuple(sorted(packet.items())))
        if state in path:
            raise ValueError(f"forwarding loop: packet returns to dpid {dpid} port {in_port}")
        if len(path) >= self.MAX_HOPS:
            raise ValueError(f"path longer than {self.MAX_HOPS} hops")
        leaving: list[tuple[int, Output]] = []
        for out in self.switches[dpid].process(in_port, packet):
            found = self._peer(dpid, out)
            if found is None:
                leaving.append((dpid, out))
            else:
                (peer_dpid, peer_port), carried = found
                leaving += self._trace(peer_dpid, peer_port, carried, path + (state,))
        return leaving
