"""What the controller knows of one connected switch: its ports, what it holds, its neighbours."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import ofmsg
from ..flows.common import SwitchProgram
from ..reconcile import ReportedFlow


@dataclass(frozen=True)
class PortState:
    number: int
    live: bool


@dataclass
class Pending:
    """Stats replies collected while a (re)connected switch is being reconciled."""

    flows: list[ReportedFlow] = field(default_factory=list)
    groups: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    flows_done: bool = False
    groups_done: bool = False

    @property
    def done(self) -> bool:
        return self.flows_done and self.groups_done


@dataclass
class SwitchState:
    ports: dict[str, PortState]
    pending: Pending | None = field(default_factory=Pending)
    # The program we installed, in parts ("" the switch's own, else a homenet's part at an
    # edge); None until the switch is reconciled. Each part changes on its own.
    parts: dict[str, SwitchProgram] | None = None
    present_learned: set[int] = field(default_factory=set)  # learned cookies found at reconnect
    neighbors: dict[str, ofmsg.Flow] = field(default_factory=dict)  # ip -> learned flow
    solicited: dict[str, float] = field(default_factory=dict)  # ip -> when we last asked

    @property
    def reconciled(self) -> bool:
        return self.parts is not None

    def port_numbers(self) -> dict[str, int]:
        return {name: port.number for name, port in self.ports.items()}


def union(parts: dict[str, SwitchProgram]) -> SwitchProgram:
    return SwitchProgram(flows=tuple(f for part in parts.values() for f in part.flows),
                         groups=tuple(g for part in parts.values() for g in part.groups))
