"""What the controller knows of one connected switch: its ports, what it holds, its neighbours."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.flows.common import SwitchProgram
from msp_controller.dataplane.reconcile import ReportedFlow


@dataclass(frozen=True)
class PortState:
    number: int
    live: bool


@dataclass
class Pending:
    """Stats replies collected while a (re)connected switch is being reconciled."""

    flows: list[ReportedFlow] = field(default_factory=list)
    groups: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    meters: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # id -> meters.meter_signature
    flows_done: bool = False
    groups_done: bool = False
    meters_done: bool = False

    @property
    def done(self) -> bool:
        return self.flows_done and self.groups_done and self.meters_done


@dataclass
class SwitchState:
    ports: dict[str, PortState]  # change it through set_port / remove_port only
    pending: Pending | None = field(default_factory=Pending)
    # The program we installed, in parts ("" the switch's own, else a homenet's part at an
    # edge); None until the switch is reconciled. Each part changes on its own.
    parts: dict[str, SwitchProgram] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # what each part was compiled from
    present_learned: set[int] = field(default_factory=set)  # learned cookies found at reconnect
    neighbors: dict[str, ofmsg.Flow] = field(default_factory=dict)  # ip -> learned flow
    solicited: dict[str, float] = field(default_factory=dict)  # ip -> when we last asked

    # name -> number and back, kept with the ports: an edge has two ports per homenet, so
    # nothing on an event's path may rebuild these.
    numbers: dict[str, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = {name: port.number for name, port in self.ports.items()}
        self.names = {port.number: name for name, port in self.ports.items()}

    @property
    def reconciled(self) -> bool:
        return self.parts is not None

    def set_port(self, name: str, port: PortState) -> None:
        old = self.ports.get(name)
        if old is not None and self.names.get(old.number) == name:
            del self.names[old.number]
        self.ports[name] = port
        self.numbers[name] = port.number
        self.names[port.number] = name

    def remove_port(self, name: str) -> None:
        old = self.ports.pop(name, None)
        self.numbers.pop(name, None)
        if old is not None and self.names.get(old.number) == name:
            del self.names[old.number]

    def port_numbers(self) -> dict[str, int]:
        """Port name -> number (the live map: do not change it)."""
        return self.numbers


def union(parts: dict[str, SwitchProgram]) -> SwitchProgram:
    return SwitchProgram(flows=tuple(f for part in parts.values() for f in part.flows),
                         groups=tuple(g for part in parts.values() for g in part.groups),
                         meters=tuple(m for part in parts.values() for m in part.meters))
