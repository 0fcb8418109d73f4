"""A class's quality of service in OpenFlow: the DSCP it leaves the MSP's switch with.

The MSPMB marks upstream packets, the edge downstream ones, as the class's last action
before its group: the VXLAN ports copy the DSCP to the outer header (options:tos=inherit,
dataplane/provision.py), where the shaping on the underlay ports (dataplane/shaping.py)
picks the class's queue by it. A class that trusts its hosts is left as it came.
"""
from __future__ import annotations

from msp_controller.dataplane.ofmsg import Action, SetField
from msp_controller.decide.choice import DirectionChoice


def marking(choice: DirectionChoice) -> tuple[Action, ...]:
    """The actions that mark a class's packets (none when the class trusts the host's DSCP)."""
    dscp = choice.qos.set_dscp
    return () if dscp is None else (SetField("ip_dscp", dscp),)
