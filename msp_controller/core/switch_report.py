"""The configured switches' state as health reports it: counts by role and state, and the
switches themselves only while they are few. At 10,000 homenets there are 30,000 switches,
and listing every one made GET /health 3.2 MB (bench/api_hold.py); an operator at that size
needs the counts and the switches that are not reconciled, and pages for the rest
(GET /api/v1/switches).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msp_controller.core.registry import Kind

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

LISTED_ALL_UP_TO = 1000  # switches: up to this many, health lists every one
PAUSE_EVERY = 2000  # switches walked between two pauses of the reader
STATES = ("reconciled", "connected", "disconnected")  # connected: not reconciled yet


@dataclass
class SwitchReport:
    counts: dict[str, dict[str, int]]  # role -> state -> switches
    listed: dict[str, dict[str, Any]] = field(default_factory=dict)  # datapath id (hex) -> its state
    all_listed: bool = True  # False: only those not reconciled, at most LISTED_ALL_UP_TO
    not_reconciled: int = 0


def switch_state(core: MspCore, dpid: int) -> dict[str, Any]:
    role = core.registry.roles[dpid]
    switch = core.switches.get(dpid)
    return {"role": role.kind.value, "name": role.name, "connected": switch is not None,
            "reconciled": switch is not None and switch.reconciled}


def state_name(state: dict[str, Any]) -> str:
    return "reconciled" if state["reconciled"] else "connected" if state["connected"] else "disconnected"


def switch_report(core: MspCore, pause: Callable[[], None] = lambda: None,
                  listed_all_up_to: int | None = None) -> SwitchReport:
    """Every configured switch counted; all of them listed while there are at most
    listed_all_up_to (default LISTED_ALL_UP_TO), else only those not reconciled (the first
    listed_all_up_to of them)."""
    if listed_all_up_to is None:
        listed_all_up_to = LISTED_ALL_UP_TO
    dpids = list(core.registry.roles)
    report = SwitchReport({kind.value: dict.fromkeys(STATES, 0) for kind in Kind},
                          all_listed=len(dpids) <= listed_all_up_to)
    for count, dpid in enumerate(dpids, start=1):
        if count % PAUSE_EVERY == 0:
            pause()
        if dpid not in core.registry.roles:
            continue  # its homenet was deleted meanwhile
        state = switch_state(core, dpid)
        report.counts[state["role"]][state_name(state)] += 1
        if not state["reconciled"]:
            report.not_reconciled += 1
        if report.all_listed or (not state["reconciled"] and len(report.listed) < listed_all_up_to):
            report.listed[f"{dpid:016x}"] = state
    return report


def switch_page(core: MspCore, after: int | None, limit: int) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Up to limit switches by datapath id, those above `after`; and the last id listed when
    there are more."""
    dpids = sorted(d for d in core.registry.roles if after is None or d > after)
    page = {f"{dpid:016x}": switch_state(core, dpid) for dpid in dpids[:limit]}
    return page, (f"{dpids[limit - 1]:016x}" if len(dpids) > limit else None)
