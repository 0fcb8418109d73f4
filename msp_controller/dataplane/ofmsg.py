"""Flows and groups as plain values, and the one place that turns them into Ryu messages.

The core describes what a switch should hold with Flow and Group values; builders here
make OpenFlow 1.3 messages with no connection attached (the shell attaches it at send
time). A flow's cookie is a digest of its content, so reconciliation can tell "already
there" from "must change" without comparing OVS's normalised text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

# Cookie classes: the top byte says who owns a flow.
COOKIE_CLASS_SHIFT = 56
COOKIE_CONFIG = 0x4D  # derived from config + liveness: reconciled (added and deleted)
COOKIE_NEIGHBOR = 0x4E  # learned neighbours: left alone by reconciliation, they age out
COOKIE_CLASS_MASK = 0xFF << COOKIE_CLASS_SHIFT

CONTROLLER = "controller"

# Open vSwitch's multipath hash over both IP addresses, the IP protocol and the TCP, UDP or
# SCTP ports (nicira-ext.h; Ryu names only the first two). Symmetric: a flow and its reply
# hash alike. OVS's select groups cannot do this over OpenFlow 1.3 (see docs/design.md).
NX_HASH_FIELDS_SYMMETRIC_L3L4_UDP = 3
MAX_MULTIPATH_LINKS = 64  # above this OVS's hrw falls back to iter_hash


@dataclass(frozen=True, slots=True)
class Output:
    port: int | str  # OpenFlow port number, or CONTROLLER


@dataclass(frozen=True, slots=True)
class SetField:
    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class ToGroup:
    group_id: int


@dataclass(frozen=True, slots=True)
class DecTtl:
    pass


@dataclass(frozen=True, slots=True)
class Multipath:
    """Hash the flow's 5-tuple to one of n_links links (hrw), written to register[0..bits-1]."""

    n_links: int
    register: str = "reg0"
    bits: int = 8


Action = Output | SetField | ToGroup | DecTtl | Multipath
Match = tuple[tuple[str, Any], ...]


_PAIRS: dict[tuple[str, Any], tuple[str, Any]] = {}
_PAIRS_MAX = 1 << 20


def match(**fields: Any) -> Match:
    """A match as a sorted tuple of (OXM field, value or (value, mask)).

    Equal (field, value) pairs are shared between matches (eth_type, a homenet's prefix in
    each of its flows...): thousands of homenets hold hundreds of thousands of flows."""
    pairs = []
    for pair in sorted(fields.items()):
        shared = _PAIRS.get(pair)
        if shared is None:
            shared = pair
            if len(_PAIRS) < _PAIRS_MAX:
                _PAIRS[pair] = pair
        pairs.append(shared)
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class Flow:
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    idle_timeout: int = 0
    learned: bool = False  # a neighbour entry: not reconciled, may age out
    meter: int | None = None  # the meter its packets pass first (every controller-bound flow has one)
    _cookie: int = field(default=0, compare=False, repr=False)  # computed once, on first use

    @property
    def cookie(self) -> int:
        if not self._cookie:
            klass = COOKIE_NEIGHBOR if self.learned else COOKIE_CONFIG
            digest = hashlib.blake2b(repr(self).encode(), digest_size=7).digest()
            object.__setattr__(self, "_cookie", (klass << COOKIE_CLASS_SHIFT) | int.from_bytes(digest, "big"))
        return self._cookie

    @property
    def key(self) -> tuple[int, int, Match]:
        """What OpenFlow uses to tell two flows apart: an ADD with the same key replaces."""
        return (self.table, self.priority, self.match)


@dataclass(frozen=True, slots=True)
class Bucket:
    actions: tuple[Action, ...]
    watch_port: int = ofp.OFPP_ANY
    weight: int = 0


GROUP_TYPES = {"ff": ofp.OFPGT_FF, "select": ofp.OFPGT_SELECT, "all": ofp.OFPGT_ALL,
               "indirect": ofp.OFPGT_INDIRECT}


@dataclass(frozen=True, slots=True)
class Group:
    group_id: int
    type: str  # a key of GROUP_TYPES
    buckets: tuple[Bucket, ...] = field(default_factory=tuple)


# --- builders ---------------------------------------------------------------------------


def _ryu_action(action: Action) -> Any:
    if isinstance(action, Output):
        if action.port == CONTROLLER:
            return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
        return parser.OFPActionOutput(int(action.port), 0)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.name: action.value})
    if isinstance(action, ToGroup):
        return parser.OFPActionGroup(action.group_id)
    if isinstance(action, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(action, Multipath):
        return parser.NXActionMultipath(
            fields=NX_HASH_FIELDS_SYMMETRIC_L3L4_UDP, basis=0, algorithm=nicira_ext.NX_MP_ALG_HRW,
            max_link=action.n_links - 1, arg=0, ofs_nbits=nicira_ext.ofs_nbits(0, action.bits - 1),
            dst=action.register)
    raise TypeError(f"unknown action {action!r}")


def flow_add(flow: Flow) -> parser.OFPFlowMod:
    instructions: list[Any] = []
    if flow.meter is not None:
        instructions.append(parser.OFPInstructionMeter(flow.meter, ofp.OFPIT_METER))
    if flow.actions:
        instructions.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [_ryu_action(a) for a in flow.actions]))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return parser.OFPFlowMod(
        None, cookie=flow.cookie, table_id=flow.table, command=ofp.OFPFC_ADD,
        idle_timeout=flow.idle_timeout, priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER, flags=ofp.OFPFF_SEND_FLOW_REM if flow.learned else 0,
        match=ryu_match(flow.match), instructions=instructions)


_FIELDS: dict[tuple[str, Any], tuple[Any, tuple[str, Any], bytes]] = {}


class _PrebuiltMatch(parser.OFPMatch):  # type: ignore[misc]
    """An OFPMatch whose fields Ryu has normalised and encoded before (see ryu_match).

    Ryu builds an OFPMatch by running every field through three conversions, and encodes
    it again when the message is sent; with hundreds of thousands of flows that is most of
    a cold start. This one keeps Ryu's normalised fields (for anything that reads them) and
    the wire bytes, written as they are."""

    _wc = parser.FlowWildcards()  # read by Ryu's checks for its old match API only
    _flow = parser.Flow()

    def __init__(self, fields2: list[tuple[str, Any]], wire: bytes) -> None:  # no super(): see above
        self._fields2 = fields2
        self._wire = wire
        self.fields: list[Any] = []
        self.type = ofp.OFPMT_OXM
        self.length = 4 + len(wire)

    def serialize(self, buf: bytearray, offset: int) -> int:
        length = 4 + len(self._wire)
        msg_pack_into(f"!HH{len(self._wire)}s", buf, offset, ofp.OFPMT_OXM, length, self._wire)
        padding = -length % 8
        msg_pack_into(f"{padding}x", buf, offset + length)
        self.length = length
        return length + padding


def ryu_match(fields: Match) -> parser.OFPMatch:
    """The OFPMatch of a match; each (field, value) is converted and encoded by Ryu once, then
    reused (a homenet's prefix, eth_type, a port: most pairs recur)."""
    converted = []
    for pair in fields:
        known = _FIELDS.get(pair)
        if known is None:
            name, value = ofp.oxm_normalize_user(*pair)
            oxm = ofp.oxm_from_user(name, value)
            wire = bytearray()
            ofp.oxm_serialize(*oxm, wire, 0)
            known = (oxm[0][0] if isinstance(oxm[0], tuple) else oxm[0], ofp.oxm_to_user(*oxm), bytes(wire))
            if len(_FIELDS) < _PAIRS_MAX:
                _FIELDS[pair] = known
        converted.append(known)
    converted.sort(key=lambda item: item[0])  # Ryu's own order: by OXM type
    return _PrebuiltMatch([user for _, user, _ in converted], b"".join(wire for _, _, wire in converted))


def flow_delete_strict(table: int, priority: int, ryu_match: Any, cookie: int) -> parser.OFPFlowMod:
    """Delete exactly one flow, identified as the switch reported it."""
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=table,
        command=ofp.OFPFC_DELETE_STRICT, priority=priority, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=ryu_match)


def _ryu_buckets(group: Group) -> list[Any]:
    return [parser.OFPBucket(weight=b.weight, watch_port=b.watch_port, watch_group=ofp.OFPG_ANY,
                             actions=[_ryu_action(a) for a in b.actions])
            for b in group.buckets]


def group_add(group: Group) -> parser.OFPGroupMod:
    return parser.OFPGroupMod(None, ofp.OFPGC_ADD, GROUP_TYPES[group.type], group.group_id,
                              _ryu_buckets(group))


def group_modify(group: Group) -> parser.OFPGroupMod:
    return parser.OFPGroupMod(None, ofp.OFPGC_MODIFY, GROUP_TYPES[group.type], group.group_id,
                              _ryu_buckets(group))


def group_delete(group_id: int) -> parser.OFPGroupMod:
    return parser.OFPGroupMod(None, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def barrier() -> parser.OFPBarrierRequest:
    return parser.OFPBarrierRequest(None)


def packet_out(port: int, data: bytes, before: Sequence[Action] = ()) -> parser.OFPPacketOut:
    """before: actions ahead of the output (a shared tunnel port's key and remote address)."""
    return parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                               actions=[*(_ryu_action(a) for a in before), parser.OFPActionOutput(port, 0)],
                               data=data)


def flow_stats_request() -> parser.OFPFlowStatsRequest:
    return parser.OFPFlowStatsRequest(None, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                      parser.OFPMatch())


def group_desc_request() -> parser.OFPGroupDescStatsRequest:
    return parser.OFPGroupDescStatsRequest(None, 0)


def port_desc_request() -> parser.OFPPortDescStatsRequest:
    return parser.OFPPortDescStatsRequest(None, 0)


# --- reading back what the switch reports -------------------------------------------


def group_signature(type_: int, buckets: Any) -> tuple[Any, ...]:
    """A comparable form of a group, the same for a Group we built and one OVS reports."""
    def action_sig(action: Any) -> tuple[Any, ...]:
        if isinstance(action, parser.OFPActionOutput):
            return ("output", action.port)
        if isinstance(action, parser.OFPActionSetField):
            return ("set_field", action.key, str(action.value).lower())
        if isinstance(action, parser.OFPActionGroup):
            return ("group", action.group_id)
        return (type(action).__name__,)

    return (type_, tuple((b.weight if type_ == ofp.OFPGT_SELECT else 0, b.watch_port,
                          tuple(action_sig(a) for a in b.actions)) for b in buckets))


def desired_group_signature(group: Group) -> tuple[Any, ...]:
    return group_signature(GROUP_TYPES[group.type], _ryu_buckets(group))
