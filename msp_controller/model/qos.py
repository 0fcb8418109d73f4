"""Quality of service: a class's marking, priority and rate limit; an ISP's access rates.

A class's "qos" (in a policy, on a class or on "default"; every field optional)::

    {"dscp": 46 | "trust",        # set this DSCP on the class's packets, or keep the host's
     "priority": "realtime" | 10,  # strict priority, or a weighted share 1..100 (default 10)
     "max_rate_kbps": 2000}        # optional: an OpenFlow meter drops what exceeds it

The class's DSCP is what names its queue in the shaping at both ends (dataplane/shaping.py):
the tunnels copy it to the outer header, and u32 filters on the underlay ports pick the
queue by it. So a real-time class must set its DSCP (trusting hosts would let any host
into the strict-priority queue), and two classes that set one DSCP must agree on the
priority. Packets of trusted classes are queued with the default share, whatever they carry,
unless their DSCP is one a class sets. No "qos" at all: trust, default share, no limit.

An ISP's rates (per uplink, in the config or by REST): "down_kbps" and "up_kbps", the
access link's rates; shaping runs a little below them, so the ISP's own buffer stays empty.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from msp_controller.model.errors import FieldError

TRUST: Final = "trust"
REALTIME: Final = "realtime"
Dscp = int | Literal["trust"]
Priority = int | Literal["realtime"]

MAX_DSCP = 63
WEIGHT_RANGE = (1, 100)
DEFAULT_WEIGHT = 10
RATE_KBPS_RANGE = (8, 100_000_000)  # 8 kbit/s .. 100 Gbit/s
MAX_WEIGHTED_DSCPS = 12  # queues per homenet and ISP: 13, one real-time, one default (dataplane/shaping.py)
QOS_FIELDS = ("dscp", "priority", "max_rate_kbps")
RATE_FIELDS = ("down_kbps", "up_kbps")


@dataclass(frozen=True)
class ClassQos:
    """How the MSP treats one class's packets, in both directions."""

    dscp: Dscp = TRUST
    priority: Priority = DEFAULT_WEIGHT
    max_rate_kbps: int | None = None

    @property
    def realtime(self) -> bool:
        return self.priority == REALTIME

    @property
    def set_dscp(self) -> int | None:
        """The DSCP the MSP writes on the class's packets, None when it keeps the host's."""
        return None if self.dscp == TRUST else int(self.dscp)


@dataclass(frozen=True)
class IspRates:
    """An access link's rates, in kbit/s each way (None: not known, not shaped)."""

    down_kbps: int | None = None
    up_kbps: int | None = None


# --- to and from JSON ---------------------------------------------------------------------


def qos_to_json(qos: ClassQos) -> dict[str, object]:
    out: dict[str, object] = {"dscp": qos.dscp, "priority": qos.priority}
    if qos.max_rate_kbps is not None:
        out["max_rate_kbps"] = qos.max_rate_kbps
    return out


def rates_to_json(rates: IspRates) -> dict[str, object]:
    return {"down_kbps": rates.down_kbps, "up_kbps": rates.up_kbps}


def parse_qos(value: object, where: str) -> ClassQos:
    data = _object(value, where, QOS_FIELDS)
    qos = ClassQos()
    dscp: Dscp = TRUST
    if "dscp" in data:
        raw = data["dscp"]
        dscp = TRUST if raw == TRUST else _integer(raw, f"{where}.dscp", 0, MAX_DSCP, "an integer or 'trust'")
    priority: Priority = qos.priority
    if "priority" in data:
        raw = data["priority"]
        priority = REALTIME if raw == REALTIME else _integer(raw, f"{where}.priority", *WEIGHT_RANGE,
                                                            "'realtime' or a weight")
    rate = None
    if "max_rate_kbps" in data:
        rate = _integer(data["max_rate_kbps"], f"{where}.max_rate_kbps", *RATE_KBPS_RANGE, "an integer")
    if priority == REALTIME and dscp == TRUST:
        raise FieldError(f"{where}.dscp", "a realtime class must set its DSCP (0..63): trusting hosts' "
                                          "marking would let any host into the strict-priority queue")
    return ClassQos(dscp=dscp, priority=priority, max_rate_kbps=rate)


def parse_rates(value: object, where: str) -> IspRates:
    """Rates of one ISP: {"down_kbps": N, "up_kbps": N}, either may be null (not shaped)."""
    data = _object(value, where, RATE_FIELDS)
    found: dict[str, int | None] = {}
    for key in RATE_FIELDS:
        raw = data.get(key)
        found[key] = None if raw is None else _integer(raw, f"{where}.{key}", *RATE_KBPS_RANGE, "an integer")
    return IspRates(down_kbps=found["down_kbps"], up_kbps=found["up_kbps"])


def check_queues(qos_by_class: Mapping[str, ClassQos], where_of: Mapping[str, str]) -> None:
    """Two classes that set one DSCP share a queue: they must agree on the priority."""
    owner: dict[int, str] = {}
    for name, qos in qos_by_class.items():
        dscp = qos.set_dscp
        if dscp is None:
            continue
        if dscp in owner and qos_by_class[owner[dscp]].priority != qos.priority:
            raise FieldError(f"{where_of[name]}.priority",
                             f"DSCP {dscp} is also set by class {owner[dscp]!r} with priority "
                             f"{qos_by_class[owner[dscp]].priority!r}: one DSCP is one queue, one priority")
        owner.setdefault(dscp, name)
    weighted = {d for d, name in owner.items() if not qos_by_class[name].realtime}
    if len(weighted) > MAX_WEIGHTED_DSCPS:
        last = [name for name in qos_by_class if qos_by_class[name].set_dscp in weighted][-1]
        raise FieldError(f"{where_of[last]}.dscp", f"{len(weighted)} DSCPs set by weighted classes "
                                                   f"(at most {MAX_WEIGHTED_DSCPS}: each is a queue at every ISP)")


def _object(value: object, where: str, fields: tuple[str, ...]) -> dict[object, object]:
    if not isinstance(value, dict):
        raise FieldError(where, "must be an object")
    for key in value:
        if key not in fields:
            shown = key[:64] if isinstance(key, str) else repr(key)
            raise FieldError(f"{where}.{shown}", f"unknown field (expected {', '.join(fields)})")
    return value


def _integer(value: object, where: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value)[:40] if isinstance(value, (str, float)) else type(value).__name__
        raise FieldError(where, f"must be {what}, not {shown}")
    if not low <= value <= high:
        shown = str(value) if value.bit_length() <= 64 else "a huge integer"
        raise FieldError(where, f"{shown} is out of range {low}..{high}")
    return value
