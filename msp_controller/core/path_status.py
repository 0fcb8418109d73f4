"""What is known of each tunnel path right now: up, down or unknown, end by end.

A path is up when both its ends (the MSPMB's tunnel port and the edge's) report it live,
down when either end reports it dead, and unknown otherwise: a box not connected, or a
port it has not reported. Forwarding may still use an unknown path (decide/paths.py
counts an end not heard from as live, so as not to move traffic that flows); what the
operator is told must not pretend such a path is known to work.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from msp_controller.core.switches import SwitchState
from msp_controller.decide.paths import TunnelPath
from msp_controller.model.config import Homenet, edge_tunnel_port, mspmb_tunnel_port

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

PathState = Literal["up", "down", "unknown"]
UP: Final[PathState] = "up"
DOWN: Final[PathState] = "down"
UNKNOWN: Final[PathState] = "unknown"
PATH_STATES: tuple[PathState, ...] = (UP, DOWN, UNKNOWN)


def end_state(live: bool | None) -> PathState:
    """One tunnel end as its switch last reported it (None: not reported)."""
    if live is None:
        return UNKNOWN
    return UP if live else DOWN


def combined(ends: Iterable[PathState]) -> PathState:
    """Down if any part is down, up if every part is up, else unknown."""
    states = set(ends)
    if DOWN in states:
        return DOWN
    return UP if states == {UP} else UNKNOWN


@dataclass(frozen=True, slots=True)
class PathStatus:
    path: TunnelPath
    state: PathState
    mspmb_end: PathState
    edge_end: PathState

    @property
    def live(self) -> bool:
        """Known live: both ends say so."""
        return self.state == UP


def _port_live(switch: SwitchState | None, port: str) -> bool | None:
    """A port's liveness as its switch reported it; None if the switch is not connected
    or has not reported the port. (What core.liveness reads, without a KeyError per
    unreported port: this runs for every path at each scrape.)"""
    found = switch.ports.get(port) if switch is not None else None
    return None if found is None else found.live


def path_status(core: MspCore, homenet: Homenet, path: TunnelPath) -> PathStatus:
    edge = core.registry.edge(path.edge)
    uplink = homenet.uplink(path.uplink)
    home_end = end_state(_port_live(core.switches.get(homenet.dpid), mspmb_tunnel_port(edge, uplink)))
    edge_end = end_state(_port_live(core.switches.get(edge.dpid), edge_tunnel_port(uplink))
                         if uplink.address else False)  # no address: the edge cannot send
    return PathStatus(path, combined((home_end, edge_end)), home_end, edge_end)


def homenet_path_status(core: MspCore, name: str) -> dict[TunnelPath, PathStatus]:
    """Every path of the homenet, in the plan's order."""
    state = core.homenets[name]
    return {path: path_status(core, state.spec, path) for path in state.plan.paths}


def active_state(statuses: Mapping[TunnelPath, PathStatus], active: Iterable[TunnelPath]) -> PathState | None:
    """What is known of the paths a class uses now; None when it uses none."""
    states = [statuses[path].state if path in statuses else UNKNOWN for path in active]
    return combined(states) if states else None
