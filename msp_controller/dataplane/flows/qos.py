"""A class's quality of service in OpenFlow: the DSCP it leaves the MSP's switch with, and
its rate limit.

The MSPMB marks upstream packets, the edge downstream ones, as the class's last action
before its group: the VXLAN ports copy the DSCP to the outer header (options:tos=inherit,
dataplane/provision.py), where the shaping on the underlay ports (dataplane/shaping.py)
picks the class's queue by it. A class that trusts its hosts is left as it came.

A class with max_rate_kbps passes a kbit/s meter (drop band) at the same two places.
Meter ids 1-15 are the controller path's (dataplane/meters.py); a class's id holds its
homenet and its index, so the parts of one edge never share one.
"""
from __future__ import annotations

from msp_controller.dataplane.meters import PUNT_METER_IDS, Meter
from msp_controller.dataplane.ofmsg import Action, SetField
from msp_controller.decide.choice import DirectionChoice

FIRST_CLASS_METER = PUNT_METER_IDS.stop  # 16
CLASS_BITS = 7  # a policy has at most 64 classes (+ the default): 65 indexes


def marking(choice: DirectionChoice) -> tuple[Action, ...]:
    """The actions that mark a class's packets (none when the class trusts the host's DSCP)."""
    dscp = choice.qos.set_dscp
    return () if dscp is None else (SetField("ip_dscp", dscp),)


def class_meter(homenet_id: int, choice: DirectionChoice) -> Meter | None:
    """The meter of a rate-limited class; its burst is one second at the rate (a smaller
    one passes far less than the rate in the userspace datapath: ../shared/PLATFORM.md)."""
    rate = choice.qos.max_rate_kbps
    if rate is None:
        return None
    return Meter(FIRST_CLASS_METER + ((homenet_id << CLASS_BITS) | choice.index), rate, rate, kbps=True)
