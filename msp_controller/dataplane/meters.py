"""OpenFlow meters on the controller path: every flow that sends packets to the controller
passes the meter of its reason, so a flood costs the controller a bounded packet-in rate.

Each MSPMB and edge holds one meter per reason (ids 1-15; ids 16 and above are QoS class
meters). The rates come from the config's [flood] section (model/flood.py); the reasons
and why each rate was chosen are in docs/design.md, "Flood protection".
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from msp_controller.model.flood import PuntRates

PUNT_METER_IDS = range(1, 16)  # meters of controller-bound flows; 16 and above: QoS classes


class PuntReason(enum.Enum):
    """Why a packet goes to the controller; the value is the meter id on every switch."""

    NEIGHBOR = 1  # ARP and neighbour discovery from a LAN port or an edge's Internet link
    UNRESOLVED = 2  # a packet for a homenet address with no neighbour entry (solicit it)
    PROBE = 3  # a probe reflected by an MSPMB, back at its edge
    AUTOCONF = 4  # DHCP and router solicitations from hosts


@dataclass(frozen=True, slots=True)
class Meter:
    """A packets-per-second meter that drops what exceeds its rate (burst: packets); with
    kbps, a kbit/s meter (rate and burst in kbit: a QoS class's rate limit)."""

    meter_id: int
    rate_pps: int
    burst: int
    kbps: bool = False


def punt_meters(rates: PuntRates) -> tuple[Meter, ...]:
    """One meter per reason; a burst of one second's packets."""
    return tuple(Meter(reason.value, rate, rate) for reason in PuntReason
                 if (rate := rates.pps(reason.name.lower())) > 0)


_FLAGS = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
_KBPS_FLAGS = ofp.OFPMF_KBPS | ofp.OFPMF_BURST


def _flags(meter: Meter) -> int:
    return _KBPS_FLAGS if meter.kbps else _FLAGS


def _bands(meter: Meter) -> list[Any]:
    return [parser.OFPMeterBandDrop(rate=meter.rate_pps, burst_size=meter.burst)]


def meter_add(meter: Meter) -> parser.OFPMeterMod:
    return parser.OFPMeterMod(None, ofp.OFPMC_ADD, _flags(meter), meter.meter_id, _bands(meter))


def meter_modify(meter: Meter) -> parser.OFPMeterMod:
    return parser.OFPMeterMod(None, ofp.OFPMC_MODIFY, _flags(meter), meter.meter_id, _bands(meter))


def meter_delete(meter_id: int) -> parser.OFPMeterMod:
    return parser.OFPMeterMod(None, ofp.OFPMC_DELETE, 0, meter_id, [])


def meter_config_request() -> parser.OFPMeterConfigStatsRequest:
    return parser.OFPMeterConfigStatsRequest(None, 0, ofp.OFPM_ALL)


def meter_signature(flags: int, bands: Any) -> tuple[Any, ...]:
    """A comparable form of a meter, the same for a Meter we built and one a switch reports."""
    return (flags & (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS),
            tuple((band.type, band.rate, band.burst_size) for band in bands))


def desired_meter_signature(meter: Meter) -> tuple[Any, ...]:
    return meter_signature(_flags(meter), _bands(meter))

