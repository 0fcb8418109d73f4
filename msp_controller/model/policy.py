"""A homenet's traffic policy: which ISPs carry which traffic, in each direction.

The policy arrives as decoded JSON (the body of PUT /api/v1/homenets/{name}/policy) and
is checked against the homenet's config. parse_policy() returns a frozen Policy or raises
FieldError naming the first bad field; it raises nothing else, whatever it is given.

JSON shape::

    {
      "classes": [                                  # optional, at most 64, must not overlap
        {"name": "voice",                           # [a-z][a-z0-9_-]{0,31}, unique, not "default"
         "match": {"protocol": "udp",               # tcp udp icmp(v4: 1) icmpv6(58) or 0..255
                   "dst_ports": ["16384-32767"],    # ports: 1..65535 or "low-high"; tcp/udp only
                   "dscp": 46,                      # 0..63
                   "sources": ["198.51.100.0/28"]}, # inside the homenet's prefixes, v4 and/or v6
         "egress":  {"mode": "failover", "order": ["ispB", "ispA"]},
         "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}},
        {"name": "bulk",
         "match": {"protocol": "tcp", "dst_ports": [80, 443, "8000-8080"]},
         "egress":  {"mode": "balance", "weights": {"ispA": 3, "ispB": 1}},
         "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}},
        {"name": "gaming",
         "match": {"protocol": "udp", "src_ports": ["27000-27100"], "sources": ["198.51.100.64/26"]},
         "egress":  {"mode": "sla", "order": ["ispA", "ispB"],
                     "max_rtt_ms": 50, "max_loss_pct": 2, "max_jitter_ms": 20},
         "ingress": {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 50, "max_loss_pct": 2}}
      ],
      "default": {"egress":  {"mode": "failover", "order": ["ispA", "ispB"]},   # required
                  "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}},
      "damping": {"recover_s": 2, "half_life_s": 15, "max_hold_s": 30},         # optional
      "rates": {"ispA": {"down_kbps": 100000, "up_kbps": 20000}}                # optional
    }

Without "rates", the policy keeps the rates in the homenet's config (its uplinks' down_kbps
and up_kbps); with it, exactly those given (an ISP left out is not shaped).

Every class and "default" may also carry "qos" (marking, priority, rate limit); "rates"
gives ISPs' access rates, below which the MSP shapes the homenet's traffic at both ends:
see model/qos.py.

Match fields are all optional but a class needs at least one (a class matching everything
is what "default" is for). They describe packets as they LEAVE the homenet: "sources" are
homenet addresses, "dst_ports" are the remote ports, "src_ports" the local ones. Incoming
packets of the same class are matched by the mirror image (ClassMatch.mirrored()): the
sources become destinations and the two port lists swap; protocol and DSCP are kept (a
remote that marks its packets differently simply falls into another class on the way in).
No packet may match two classes: classes whose every dimension intersects are refused
(without its "sources", "gaming" above would clash with "voice": a udp packet from
198.51.100.1 with source port 27000 to port 16384 marked dscp 46 would match both).

Modes, in each direction:
  failover  "order": non-empty list of distinct ISPs of this homenet; the first live one
            carries the traffic. Unlisted ISPs are never used for this class.
  balance   "weights": {ISP: 1..100}, at least one; live ISPs share flows by weight.
  sla       "order" as failover, plus thresholds, at least one of "max_rtt_ms" (1..10000),
            "max_loss_pct" (0..100), "max_jitter_ms" (0..10000): the first ISP in order
            whose path meets them all is used. A path that broke the SLA is used again
            only once it has met the thresholds scaled by (1 - "hysteresis_pct"/100)
            (0..100, default 20) for "recover_s" seconds (0..3600, default 10).

Flap damping ("damping", every field optional, for every path of the homenet): each
failure of a path adds 1 to its penalty, which halves every "half_life_s" (1..3600,
default 15) while the path is up. A path that failed carries traffic again (unless no
other path is live) only after "recover_s" (0..3600, default 2) + half_life_s x
log2(penalty) seconds up, and at most after "max_hold_s" (recover_s..3600, default 30; 0
turns damping off). See decide/damping.py.

Unknown keys, wrong types (true is not a number) and out-of-range values are errors. Error
paths look like classes[1].egress.weights.ispC; an error about the whole document has an
empty path, and then str() is the problem alone.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from msp_controller.model.config import Homenet, IPNetwork
from msp_controller.model.errors import FieldError
from msp_controller.model.portranges import MAX_PORT, PortRange
from msp_controller.model.qos import (
    ClassQos,
    IspRates,
    check_queues,
    parse_qos,
    parse_rates,
    qos_to_json,
    rates_to_json,
)

PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
PORT_PROTOCOLS = (PROTOCOL_NUMBERS["tcp"], PROTOCOL_NUMBERS["udp"])
MAX_PROTOCOL = 255
MAX_DSCP = 63

Mode = Literal["failover", "balance", "sla"]
FAILOVER: Final[Mode] = "failover"
BALANCE: Final[Mode] = "balance"
SLA: Final[Mode] = "sla"
MODES: tuple[Mode, ...] = (FAILOVER, BALANCE, SLA)
MODE_FIELDS = {
    FAILOVER: ("mode", "order"),
    BALANCE: ("mode", "weights"),
    SLA: ("mode", "order", "max_rtt_ms", "max_loss_pct", "max_jitter_ms", "hysteresis_pct", "recover_s"),
}
CLASS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_NAME = "default"
PORT_RANGE_TEXT = re.compile(r"([0-9]{1,5})-([0-9]{1,5})")

MAX_CLASSES = 64
MAX_PORT_RANGES = 32  # per list
MAX_SOURCES = 32
MAX_MATCH_ENTRIES = 1024  # flow entries one class may need per direction
WEIGHT_RANGE = (1, 100)
RTT_RANGE = (1.0, 10000.0)
LOSS_RANGE = (0.0, 100.0)
JITTER_RANGE = (0.0, 10000.0)
HYSTERESIS_RANGE = (0.0, 100.0)
RECOVER_RANGE = (0.0, 3600.0)
DEFAULT_HYSTERESIS_PCT = 20.0
DEFAULT_RECOVER_S = 10.0
DAMPING_FIELDS = ("recover_s", "half_life_s", "max_hold_s")
HALF_LIFE_RANGE = (1.0, 3600.0)
MAX_HOLD_RANGE = (0.0, 3600.0)
# A failed path waits 2 s: longer than BFD's slow start (see docs/design.md, "Flap damping").
DEFAULT_DAMPING_RECOVER_S = 2.0
DEFAULT_DAMPING_HALF_LIFE_S = 15.0
DEFAULT_DAMPING_MAX_HOLD_S = 30.0


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PacketMatch:
    """Header fields of the packets of one class in one direction, for the flow compiler."""

    protocol: int | None
    src_ports: tuple[PortRange, ...]
    dst_ports: tuple[PortRange, ...]
    dscp: int | None
    src_nets: tuple[IPNetwork, ...]
    dst_nets: tuple[IPNetwork, ...]

    def ip_versions(self) -> tuple[int, ...]:
        """The IP versions this match needs flow entries for."""
        nets = self.src_nets + self.dst_nets
        return tuple(sorted({n.version for n in nets})) if nets else (4, 6)


@dataclass(frozen=True)
class ClassMatch:
    """Which packets belong to a class, as they leave the homenet. Empty fields match any."""

    protocol: int | None = None
    src_ports: tuple[PortRange, ...] = ()  # local (homenet side) ports
    dst_ports: tuple[PortRange, ...] = ()  # remote ports
    dscp: int | None = None
    sources: tuple[IPNetwork, ...] = ()  # homenet addresses

    def as_egress(self) -> PacketMatch:
        return PacketMatch(self.protocol, self.src_ports, self.dst_ports, self.dscp, self.sources, ())

    def mirrored(self) -> PacketMatch:
        """The same class on the way in: remote ports are sources, homenet addresses destinations."""
        return PacketMatch(self.protocol, self.dst_ports, self.src_ports, self.dscp, (), self.sources)

    def ip_versions(self) -> tuple[int, ...]:
        return self.as_egress().ip_versions()

    def flow_entries(self) -> int:
        """Flow entries a direction needs: masked port matches x sources (or one per IP version)."""
        src = sum(len(r.masks()) for r in self.src_ports) or 1
        dst = sum(len(r.masks()) for r in self.dst_ports) or 1
        return src * dst * (len(self.sources) or 2)

    def overlap_example(self, other: ClassMatch) -> str | None:
        """Describe a packet both matches accept, or None if there is none."""
        if None not in (self.protocol, other.protocol) and self.protocol != other.protocol:
            return None
        if None not in (self.dscp, other.dscp) and self.dscp != other.dscp:
            return None
        src_port = _common_port(self.src_ports, other.src_ports)
        dst_port = _common_port(self.dst_ports, other.dst_ports)
        source = _common_address(self.sources, other.sources)
        if src_port is None or dst_port is None or source is None:
            return None
        protocol = self.protocol if self.protocol is not None else other.protocol
        dscp = self.dscp if self.dscp is not None else other.dscp
        return _describe_packet(protocol, src_port, dst_port, dscp, source)


@dataclass(frozen=True)
class DirectionPolicy:
    """How one direction of a class's traffic picks ISPs."""

    mode: Mode
    order: tuple[str, ...] = ()  # failover and sla
    weights: tuple[tuple[str, int], ...] = ()  # balance, in the homenet's uplink order
    max_rtt_ms: float | None = None  # sla thresholds; None: not checked
    max_loss_pct: float | None = None
    max_jitter_ms: float | None = None
    hysteresis_pct: float = DEFAULT_HYSTERESIS_PCT
    recover_s: float = DEFAULT_RECOVER_S

    @classmethod
    def failover(cls, order: Sequence[str]) -> DirectionPolicy:
        return cls(FAILOVER, order=tuple(order))

    def isps(self) -> tuple[str, ...]:
        """The ISPs this policy may use, in order (failover, sla) or uplink order (balance)."""
        return tuple(isp for isp, _ in self.weights) if self.mode == BALANCE else self.order

    def meets_sla(
        self,
        rtt_ms: float | None,
        loss_pct: float | None,
        jitter_ms: float | None = None,
        *,
        recovering: bool = False,
    ) -> bool:
        """Whether a path with these measurements is good enough right now.

        A threshold without a measurement fails: an unmeasured path is not known to be good.
        `recovering`: the path broke the SLA before, so it must do better, by hysteresis_pct;
        timing recover_s is the caller's job. Policies without thresholds always pass.
        """
        scale = 1 - self.hysteresis_pct / 100 if recovering else 1.0
        for limit, value in (
            (self.max_rtt_ms, rtt_ms),
            (self.max_loss_pct, loss_pct),
            (self.max_jitter_ms, jitter_ms),
        ):
            if limit is not None and (value is None or value > limit * scale):
                return False
        return True


@dataclass(frozen=True)
class ClassPolicy:
    """The ISP choice for both directions of some traffic."""

    egress: DirectionPolicy
    ingress: DirectionPolicy
    qos: ClassQos = ClassQos()  # marking, priority, rate limit (model/qos.py)


@dataclass(frozen=True)
class TrafficClass:
    name: str
    match: ClassMatch
    egress: DirectionPolicy
    ingress: DirectionPolicy
    qos: ClassQos = ClassQos()

    @property
    def policy(self) -> ClassPolicy:
        return ClassPolicy(self.egress, self.ingress, self.qos)


@dataclass(frozen=True)
class Damping:
    """How long a path that failed stays out of use once it is up again (decide/damping.py)."""

    recover_s: float = DEFAULT_DAMPING_RECOVER_S  # up time needed after a single failure
    half_life_s: float = DEFAULT_DAMPING_HALF_LIFE_S  # the failure count halves this often while up
    max_hold_s: float = DEFAULT_DAMPING_MAX_HOLD_S  # the longest wait; 0: no damping

    @property
    def enabled(self) -> bool:
        return self.max_hold_s > 0


@dataclass(frozen=True)
class Policy:
    """A homenet's classes (no two overlap), the policy for everything else, and how
    paths that keep failing are damped (the same for every class)."""

    classes: tuple[TrafficClass, ...]
    default: ClassPolicy
    damping: Damping = Damping()
    rates: tuple[tuple[str, IspRates], ...] = ()  # ISP -> access rates, in uplink order; unlisted: not shaped

    def isp_rates(self, isp: str) -> IspRates:
        return dict(self.rates).get(isp, IspRates())

    @classmethod
    def default_for(cls, homenet: Homenet) -> Policy:
        return default_policy(homenet)

    def traffic_class(self, name: str) -> TrafficClass:
        for traffic_class in self.classes:
            if traffic_class.name == name:
                return traffic_class
        raise KeyError(name)

    def direction_policies(self) -> Iterator[tuple[str, str, DirectionPolicy]]:
        """(class name or "default", "egress" or "ingress", policy) for every direction."""
        for traffic_class in self.classes:
            yield traffic_class.name, "egress", traffic_class.egress
            yield traffic_class.name, "ingress", traffic_class.ingress
        yield DEFAULT_NAME, "egress", self.default.egress
        yield DEFAULT_NAME, "ingress", self.default.ingress

    def isps_used(self) -> frozenset[str]:
        return frozenset(isp for _, _, direction in self.direction_policies() for isp in direction.isps())

    def needs_measurements(self) -> bool:
        """Whether any direction uses mode sla, so paths must be measured."""
        return any(direction.mode == SLA for _, _, direction in self.direction_policies())


def default_policy(homenet: Homenet) -> Policy:
    """The policy the homenet's config implies: no classes, failover in the configured orders,
    the configured ISP rates."""
    return Policy(
        classes=(),
        default=ClassPolicy(
            egress=DirectionPolicy.failover(homenet.egress_order),
            ingress=DirectionPolicy.failover(homenet.ingress_order),
        ),
        rates=configured_rates(homenet),
    )


def configured_rates(homenet: Homenet) -> tuple[tuple[str, IspRates], ...]:
    """The ISPs' rates from the config: what a policy without "rates" keeps."""
    return tuple((u.name, u.rates) for u in homenet.uplinks if u.rates != IspRates())


def recheck_policy(policy: Policy, homenet: Homenet) -> Policy:
    """Check a policy again, e.g. after a config reload changed the homenet's ISPs or prefixes."""
    return parse_policy(policy_to_json(policy), homenet)


# --- to JSON -----------------------------------------------------------------------------


def policy_to_json(policy: Policy) -> dict[str, object]:
    """The JSON form of a policy; parse_policy() of it gives the same policy back."""
    return {
        "classes": [_class_to_json(c) for c in policy.classes],
        "default": {"egress": _direction_to_json(policy.default.egress),
                    "ingress": _direction_to_json(policy.default.ingress),
                    "qos": qos_to_json(policy.default.qos)},
        "damping": {"recover_s": policy.damping.recover_s, "half_life_s": policy.damping.half_life_s,
                    "max_hold_s": policy.damping.max_hold_s},
        "rates": {isp: rates_to_json(rates) for isp, rates in policy.rates},
    }


def _class_to_json(traffic_class: TrafficClass) -> dict[str, object]:
    return {
        "name": traffic_class.name,
        "match": _match_to_json(traffic_class.match),
        "egress": _direction_to_json(traffic_class.egress),
        "ingress": _direction_to_json(traffic_class.ingress),
        "qos": qos_to_json(traffic_class.qos),
    }


def _match_to_json(match: ClassMatch) -> dict[str, object]:
    out: dict[str, object] = {}
    if match.protocol is not None:
        out["protocol"] = PROTOCOL_NAMES.get(match.protocol, match.protocol)
    for key, ranges in (("src_ports", match.src_ports), ("dst_ports", match.dst_ports)):
        if ranges:
            out[key] = [r.low if r.low == r.high else str(r) for r in ranges]
    if match.dscp is not None:
        out["dscp"] = match.dscp
    if match.sources:
        out["sources"] = [str(net) for net in match.sources]
    return out


def _direction_to_json(direction: DirectionPolicy) -> dict[str, object]:
    out: dict[str, object] = {"mode": direction.mode}
    if direction.mode == BALANCE:
        out["weights"] = dict(direction.weights)
        return out
    out["order"] = list(direction.order)
    if direction.mode == SLA:
        for key, value in (("max_rtt_ms", direction.max_rtt_ms), ("max_loss_pct", direction.max_loss_pct),
                           ("max_jitter_ms", direction.max_jitter_ms)):
            if value is not None:
                out[key] = value
        out["hysteresis_pct"] = direction.hysteresis_pct
        out["recover_s"] = direction.recover_s
    return out


# --- from JSON ---------------------------------------------------------------------------


def parse_policy(data: object, homenet: Homenet) -> Policy:
    """Validate decoded JSON against a homenet. Raises FieldError naming the first bad field."""
    root = _Object(data, "", ("classes", "default", "damping", "rates"))
    classes = _parse_classes(root.data["classes"], "classes", homenet) if root.has("classes") else ()
    default = _parse_class_policy(root.get("default"), "default", homenet)
    damping = _parse_damping(root.data["damping"], "damping") if root.has("damping") else Damping()
    check_queues({DEFAULT_NAME: default.qos, **{c.name: c.qos for c in classes}},
                 {DEFAULT_NAME: "default.qos", **{c.name: f"classes[{i}].qos" for i, c in enumerate(classes)}})
    rates = _parse_rates(root.data["rates"], "rates", homenet) if root.has("rates") else configured_rates(homenet)
    return Policy(classes=classes, default=default, damping=damping, rates=rates)


def _parse_rates(value: object, where: str, homenet: Homenet) -> tuple[tuple[str, IspRates], ...]:
    if not isinstance(value, dict):
        raise FieldError(where, f"must be an object of ISP: rates, not {_show(value)}")
    found: dict[str, IspRates] = {}
    for isp, rates in value.items():
        here = _child(where, isp)
        if not isinstance(isp, str):
            raise FieldError(here, "ISP names must be strings")
        found[_known_isp(isp, here, homenet)] = parse_rates(rates, here)
    return tuple((u.name, found[u.name]) for u in homenet.uplinks if u.name in found)


def _parse_damping(value: object, where: str) -> Damping:
    obj = _Object(value, where, DAMPING_FIELDS)
    recover = obj.number("recover_s", *RECOVER_RANGE)
    half_life = obj.number("half_life_s", *HALF_LIFE_RANGE)
    max_hold = obj.number("max_hold_s", *MAX_HOLD_RANGE)
    damping = Damping(
        recover_s=DEFAULT_DAMPING_RECOVER_S if recover is None else recover,
        half_life_s=DEFAULT_DAMPING_HALF_LIFE_S if half_life is None else half_life,
        max_hold_s=DEFAULT_DAMPING_MAX_HOLD_S if max_hold is None else max_hold,
    )
    if damping.enabled and damping.max_hold_s < damping.recover_s:
        raise FieldError(obj.path("max_hold_s"), f"{damping.max_hold_s:g} is below recover_s "
                                                 f"({damping.recover_s:g}): the longest wait cannot be shorter "
                                                 f"than the shortest (0 turns damping off)")
    return damping


def _parse_classes(value: object, where: str, homenet: Homenet) -> tuple[TrafficClass, ...]:
    items = _list(value, where, MAX_CLASSES, allow_empty=True)
    classes: list[TrafficClass] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        traffic_class = _parse_class(item, here, homenet)
        for earlier_index, earlier in enumerate(classes):
            if earlier.name == traffic_class.name:
                raise FieldError(f"{here}.name",
                                  f"duplicate class name {earlier.name!r} (also {where}[{earlier_index}])")
            example = traffic_class.match.overlap_example(earlier.match)
            if example is not None:
                raise FieldError(f"{here}.match", f"overlaps class {earlier.name!r}: {example} matches both")
        classes.append(traffic_class)
    return tuple(classes)


def _parse_class(value: object, where: str, homenet: Homenet) -> TrafficClass:
    obj = _Object(value, where, ("name", "match", "egress", "ingress", "qos"))
    name = _string(obj.get("name"), obj.path("name"))
    if not CLASS_NAME.fullmatch(name):
        raise FieldError(obj.path("name"), f"{_show(name)} does not match {CLASS_NAME.pattern}")
    if name == DEFAULT_NAME:
        raise FieldError(obj.path("name"), f"{DEFAULT_NAME!r} is reserved for the policy's default")
    return TrafficClass(
        name=name,
        match=_parse_match(obj.get("match"), obj.path("match"), homenet),
        egress=_parse_direction(obj.get("egress"), obj.path("egress"), homenet),
        ingress=_parse_direction(obj.get("ingress"), obj.path("ingress"), homenet),
        qos=parse_qos(obj.data["qos"], obj.path("qos")) if obj.has("qos") else ClassQos(),
    )


def _parse_class_policy(value: object, where: str, homenet: Homenet) -> ClassPolicy:
    obj = _Object(value, where, ("egress", "ingress", "qos"))
    return ClassPolicy(
        egress=_parse_direction(obj.get("egress"), obj.path("egress"), homenet),
        ingress=_parse_direction(obj.get("ingress"), obj.path("ingress"), homenet),
        qos=parse_qos(obj.data["qos"], obj.path("qos")) if obj.has("qos") else ClassQos(),
    )


# --- match --------------------------------------------------------------------------------

MATCH_FIELDS = ("protocol", "src_ports", "dst_ports", "dscp", "sources")


def _parse_match(value: object, where: str, homenet: Homenet) -> ClassMatch:
    obj = _Object(value, where, MATCH_FIELDS)
    if not obj.data:
        raise FieldError(where, f"needs at least one of {', '.join(MATCH_FIELDS)} "
                                 f"(traffic that matches nothing else takes the default)")
    protocol = _protocol(obj.data["protocol"], obj.path("protocol")) if obj.has("protocol") else None
    ports: dict[str, tuple[PortRange, ...]] = {}
    for key in ("src_ports", "dst_ports"):
        ports[key] = _port_list(obj.data[key], obj.path(key)) if obj.has(key) else ()
        if ports[key] and protocol not in PORT_PROTOCOLS:
            given = "none is given" if protocol is None else f"not {_protocol_name(protocol)}"
            raise FieldError(obj.path(key), f"ports need protocol tcp or udp, {given}")
    match = ClassMatch(
        protocol=protocol,
        src_ports=ports["src_ports"],
        dst_ports=ports["dst_ports"],
        dscp=_integer(obj.data["dscp"], obj.path("dscp"), 0, MAX_DSCP) if obj.has("dscp") else None,
        sources=_sources(obj.data["sources"], obj.path("sources"), homenet) if obj.has("sources") else (),
    )
    entries = match.flow_entries()
    if entries > MAX_MATCH_ENTRIES:
        raise FieldError(where, f"needs {entries} flow entries per direction (limit {MAX_MATCH_ENTRIES}): "
                                 f"use fewer sources or fewer, aligned port ranges")
    return match


def _protocol(value: object, where: str) -> int:
    if isinstance(value, str):
        if value not in PROTOCOL_NUMBERS:
            raise FieldError(where, f"unknown protocol {_show(value)} "
                                     f"(use {', '.join(PROTOCOL_NUMBERS)} or a number 0..{MAX_PROTOCOL})")
        return PROTOCOL_NUMBERS[value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(where, f"must be a protocol name or an integer, not {_show(value)}")
    return _integer(value, where, 0, MAX_PROTOCOL)


def _protocol_name(protocol: int) -> str:
    return PROTOCOL_NAMES.get(protocol, f"protocol {protocol}")


def _port_list(value: object, where: str) -> tuple[PortRange, ...]:
    items = _list(value, where, MAX_PORT_RANGES)
    ranges: list[PortRange] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        port_range = _port_range(item, here)
        for earlier in ranges:
            if earlier.overlaps(port_range):
                problem = "duplicate" if earlier == port_range else "overlaps"
                raise FieldError(here, f"{port_range} {problem} {earlier} in the same list")
        ranges.append(port_range)
    return tuple(sorted(ranges))


def _port_range(value: object, where: str) -> PortRange:
    if isinstance(value, int) and not isinstance(value, bool):
        return PortRange.single(_integer(value, where, 1, MAX_PORT))
    if not isinstance(value, str):
        raise FieldError(where, f"must be a port number or a 'low-high' string, not {_show(value)}")
    parsed = PORT_RANGE_TEXT.fullmatch(value)
    if parsed is None:
        raise FieldError(where, f"{_show(value)} is not a 'low-high' port range (a single port is a number)")
    low, high = int(parsed.group(1)), int(parsed.group(2))
    for port in (low, high):
        if not 1 <= port <= MAX_PORT:
            raise FieldError(where, f"port {port} is out of range 1..{MAX_PORT}")
    if low > high:
        raise FieldError(where, f"{_show(value)} is empty: {low} is above {high}")
    return PortRange(low, high)


def _sources(value: object, where: str, homenet: Homenet) -> tuple[IPNetwork, ...]:
    items = _list(value, where, MAX_SOURCES)
    nets: list[IPNetwork] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        net = _homenet_prefix(item, here, homenet)
        for earlier in nets:
            if _interval(earlier) == _interval(net):
                raise FieldError(here, f"duplicate prefix {net}")
            if _intervals_meet(_interval(earlier), _interval(net)):
                raise FieldError(here, f"{net} overlaps {earlier} in the same list")
        nets.append(net)
    return tuple(sorted(nets, key=_interval))


def _homenet_prefix(value: object, where: str, homenet: Homenet) -> IPNetwork:
    text = _string(value, where)
    if "%" in text:
        raise FieldError(where, f"{_show(text)}: scoped addresses are not allowed")
    try:
        net = ipaddress.ip_network(text)
    except ValueError as err:
        raise FieldError(where, f"{_show(text)} is not a prefix: {err}") from None
    if not any(_intervals_nest(_interval(net), _interval(p)) for p in homenet.prefixes):
        owned = ", ".join(str(p) for p in homenet.prefixes)
        raise FieldError(where, f"{net} is not inside the homenet's prefixes ({owned})")
    return net


# --- overlap between classes -----------------------------------------------------------


Interval = tuple[int, int, int]  # (IP version, first, last); port ranges use version 0


def _interval(net: IPNetwork) -> Interval:
    return (net.version, int(net.network_address), int(net.broadcast_address))


def _intervals_meet(a: Interval, b: Interval) -> bool:
    return a[0] == b[0] and a[1] <= b[2] and b[1] <= a[2]


def _intervals_nest(inner: Interval, outer: Interval) -> bool:
    return inner[0] == outer[0] and outer[1] <= inner[1] and inner[2] <= outer[2]


def _first_overlap(a: Sequence[Interval], b: Sequence[Interval]) -> Interval | None:
    """The lowest intersection of two sorted lists of disjoint intervals, walked together."""
    i = j = 0
    while i < len(a) and j < len(b):
        if _intervals_meet(a[i], b[j]):
            return (a[i][0], max(a[i][1], b[j][1]), min(a[i][2], b[j][2]))
        if (a[i][0], a[i][2]) < (b[j][0], b[j][2]):
            i += 1
        else:
            j += 1
    return None


def _common_port(a: tuple[PortRange, ...], b: tuple[PortRange, ...]) -> int | None:
    """A port both lists accept (0 if both accept any), or None."""
    if not a and not b:
        return 0
    if not a or not b:
        return (a or b)[0].low
    common = _first_overlap(sorted((0, r.low, r.high) for r in a), sorted((0, r.low, r.high) for r in b))
    return None if common is None else common[1]


def _common_address(a: tuple[IPNetwork, ...], b: tuple[IPNetwork, ...]) -> str | None:
    """An address both source lists accept ("" if both accept any), or None."""
    if not a and not b:
        return ""
    if not a or not b:
        return _sample_address(_interval((a or b)[0]))
    common = _first_overlap(sorted(map(_interval, a)), sorted(map(_interval, b)))
    return None if common is None else _sample_address(common)


def _sample_address(interval: Interval) -> str:
    # Skip the all-zeros address of a prefix: it reads like a network, not a host.
    version, first, last = interval
    address = first + 1 if last > first else first
    return str(ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address))


def _describe_packet(protocol: int | None, src_port: int, dst_port: int, dscp: int | None, source: str) -> str:
    kind = "IP" if protocol is None else _protocol_name(protocol)
    text = f"{'an' if kind[0] in 'iI' else 'a'} {kind} packet"
    if source:
        text += f" from {source}"
    details = []
    if src_port:
        details.append(f"source port {src_port}")
    if dst_port:
        details.append(f"destination port {dst_port}")
    if dscp is not None:
        details.append(f"dscp {dscp}")
    if details:
        text += " with " + (details[0] if len(details) == 1 else ", ".join(details[:-1]) + " and " + details[-1])
    return text


# --- modes --------------------------------------------------------------------------------


def _parse_direction(value: object, where: str, homenet: Homenet) -> DirectionPolicy:
    if not isinstance(value, dict):
        raise FieldError(where, f"must be an object, not {_show(value)}")
    mode_where = _child(where, "mode")
    if "mode" not in value:
        raise FieldError(mode_where, f"is required (one of {', '.join(MODES)})")
    mode = _string(value["mode"], mode_where)
    if mode not in MODES:
        raise FieldError(mode_where, f"unknown mode {_show(mode)} (one of {', '.join(MODES)})")
    obj = _Object(value, where, MODE_FIELDS[mode], unknown=f"not a field of mode {mode!r}")
    if mode == FAILOVER:
        return DirectionPolicy(FAILOVER, order=_isp_order(obj.get("order"), obj.path("order"), homenet))
    if mode == BALANCE:
        return DirectionPolicy(BALANCE, weights=_weights(obj.get("weights"), obj.path("weights"), homenet))
    return _parse_sla(obj, homenet)


def _parse_sla(obj: _Object, homenet: Homenet) -> DirectionPolicy:
    order = _isp_order(obj.get("order"), obj.path("order"), homenet)
    thresholds = {key: obj.number(key, *limits) for key, limits in (
        ("max_rtt_ms", RTT_RANGE), ("max_loss_pct", LOSS_RANGE), ("max_jitter_ms", JITTER_RANGE))}
    if all(value is None for value in thresholds.values()):
        raise FieldError(obj.where, f"mode 'sla' needs at least one of {', '.join(thresholds)}")
    hysteresis = obj.number("hysteresis_pct", *HYSTERESIS_RANGE)
    recover = obj.number("recover_s", *RECOVER_RANGE)
    return DirectionPolicy(
        SLA,
        order=order,
        max_rtt_ms=thresholds["max_rtt_ms"],
        max_loss_pct=thresholds["max_loss_pct"],
        max_jitter_ms=thresholds["max_jitter_ms"],
        hysteresis_pct=DEFAULT_HYSTERESIS_PCT if hysteresis is None else hysteresis,
        recover_s=DEFAULT_RECOVER_S if recover is None else recover,
    )


def _isp_order(value: object, where: str, homenet: Homenet) -> tuple[str, ...]:
    # No length limit needed: past the homenet's ISP count an item must be unknown or repeated.
    items = _list(value, where, max_items=None)
    order: list[str] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        isp = _known_isp(_string(item, here), here, homenet)
        if isp in order:
            raise FieldError(here, f"duplicate ISP {isp!r}")
        order.append(isp)
    return tuple(order)


def _weights(value: object, where: str, homenet: Homenet) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        raise FieldError(where, f"must be an object of ISP: weight, not {_show(value)}")
    if not value:
        raise FieldError(where, "needs at least one ISP")
    weights: dict[str, int] = {}
    for isp, weight in value.items():
        here = _child(where, isp)
        if not isinstance(isp, str):
            raise FieldError(here, "ISP names must be strings")
        weights[_known_isp(isp, here, homenet)] = _integer(weight, here, *WEIGHT_RANGE)
    # Uplink order, so equal weights give equal policies whatever order the client sent.
    return tuple((u.name, weights[u.name]) for u in homenet.uplinks if u.name in weights)


def _known_isp(isp: str, where: str, homenet: Homenet) -> str:
    names = [u.name for u in homenet.uplinks]
    if isp not in names:
        raise FieldError(where, f"unknown ISP {_show(isp)} (this homenet has {', '.join(names)})")
    return isp


# --- JSON value helpers: each names the field it reads ------------------------------------


class _Object:
    """A JSON object and its path; refuses unknown keys before anything else is read."""

    def __init__(self, data: object, where: str, fields: Sequence[str], unknown: str = "unknown field") -> None:
        if not isinstance(data, dict):
            raise FieldError(where, f"must be an object, not {_show(data)}")
        for key in data:
            if key not in fields:
                raise FieldError(_child(where, key), f"{unknown} (expected {', '.join(fields)})")
        self.data: dict[object, object] = data
        self.where = where

    def path(self, key: str) -> str:
        return _child(self.where, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> object:
        """A required field's value (null is a value: its type check will refuse it)."""
        if key not in self.data:
            raise FieldError(self.path(key), "is required")
        return self.data[key]

    def number(self, key: str, low: float, high: float) -> float | None:
        """An optional number field, None if absent."""
        return _number(self.data[key], self.path(key), low, high) if key in self.data else None


def _child(where: str, key: object) -> str:
    return f"{where}.{_show_key(key)}" if where else _show_key(key)


def _show_key(key: object) -> str:
    return key[:64] if isinstance(key, str) else _show(key)


def _list(value: object, where: str, max_items: int | None, allow_empty: bool = False) -> list[object]:
    if not isinstance(value, list):
        raise FieldError(where, f"must be a list, not {_show(value)}")
    if not value and not allow_empty:
        raise FieldError(where, "must be a non-empty list")
    if max_items is not None and len(value) > max_items:
        raise FieldError(where, f"has {len(value)} items (at most {max_items})")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise FieldError(where, f"must be a string, not {_show(value)}")
    return value


def _integer(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(where, f"must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise FieldError(where, f"{_show(value)} is out of range {low}..{high}")
    return value


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(where, f"must be a number, not {_show(value)}")
    # Compare before float(): a huge int would overflow, and NaN fails every comparison.
    if not low <= value <= high:
        raise FieldError(where, f"{_show(value)} is out of range {low:g}..{high:g}")
    return float(value)


def _show(value: object) -> str:
    """A short, safe rendering of any client value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a huge integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
