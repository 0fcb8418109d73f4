"""Turn "what the switch has" and "what we want" into the fewest, safely ordered messages.

Nothing is flushed: flows are told apart by their content cookie, groups by their
buckets, and only what differs is sent. Order: groups first (flows may point at them),
then flow adds, then flow deletes (an add replaces a flow with the same match in place,
so traffic never meets a gap), and deleted groups last.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.flows.common import SwitchProgram


@dataclass(frozen=True)
class ReportedFlow:
    """A flow as a flow-stats reply describes it."""

    table: int
    priority: int
    cookie: int
    match: Any  # the reply's OFPMatch, reused as is to delete exactly this flow

    @property
    def is_learned(self) -> bool:
        return (self.cookie >> ofmsg.COOKIE_CLASS_SHIFT) == ofmsg.COOKIE_NEIGHBOR


def _ordered(group_changes: list[Any], flow_adds: list[Any], flow_deletes: list[Any],
             group_deletes: list[Any]) -> list[Any]:
    messages: list[Any] = []
    if group_changes:
        messages += group_changes + [ofmsg.barrier()]
    messages += flow_adds + flow_deletes
    if group_deletes:
        messages += [ofmsg.barrier()] + group_deletes
    if messages and not isinstance(messages[-1], type(ofmsg.barrier())):
        messages.append(ofmsg.barrier())
    return messages


def reconcile(desired: SwitchProgram, flows: Iterable[ReportedFlow],
              groups: dict[int, tuple[Any, ...]]) -> list[Any]:
    """Messages that bring a switch from what it reported to the desired program."""
    wanted = {flow.cookie for flow in desired.flows}
    present = set()
    flow_deletes = []
    for flow in flows:
        present.add(flow.cookie)
        if flow.cookie not in wanted and not flow.is_learned:
            flow_deletes.append(ofmsg.flow_delete_strict(flow.table, flow.priority, flow.match, flow.cookie))
    flow_adds = [ofmsg.flow_add(flow) for flow in desired.flows if flow.cookie not in present]

    group_changes = []
    for group in desired.groups:
        if group.group_id not in groups:
            group_changes.append(ofmsg.group_add(group))
        elif groups[group.group_id] != ofmsg.desired_group_signature(group):
            group_changes.append(ofmsg.group_modify(group))
    wanted_groups = {group.group_id for group in desired.groups}
    group_deletes = [ofmsg.group_delete(gid) for gid in sorted(groups) if gid not in wanted_groups]
    return _ordered(group_changes, flow_adds, flow_deletes, group_deletes)


def transition(old: SwitchProgram, new: SwitchProgram) -> list[Any]:
    """Messages that move a switch we programmed from one desired program to the next."""
    old_by_key = {flow.key: flow for flow in old.flows}
    new_by_key = {flow.key: flow for flow in new.flows}
    flow_adds = [ofmsg.flow_add(flow) for key, flow in new_by_key.items()
                 if old_by_key.get(key) != flow]
    flow_deletes = [ofmsg.flow_delete_strict(flow.table, flow.priority,
                                             ofmsg.ryu_match(flow.match), flow.cookie)
                    for key, flow in old_by_key.items() if key not in new_by_key]
    old_groups = {group.group_id: group for group in old.groups}
    new_groups = {group.group_id: group for group in new.groups}
    group_changes = []
    for gid, group in new_groups.items():
        if gid not in old_groups:
            group_changes.append(ofmsg.group_add(group))
        elif old_groups[gid] != group:
            group_changes.append(ofmsg.group_modify(group))
    group_deletes = [ofmsg.group_delete(gid) for gid in sorted(old_groups) if gid not in new_groups]
    return _ordered(group_changes, flow_adds, flow_deletes, group_deletes)
