"""Turn "what the switch has" and "what we want" into the fewest, safely ordered messages.

Nothing is flushed: flows are told apart by their content cookie, groups by their
buckets, meters by their bands, and only what differs is sent. Order: meters and groups
first (flows may point at them), then flow adds, then flow deletes (an add replaces a flow
with the same match in place, so traffic never meets a gap), and deleted groups and
meters last (deleting a meter would delete the flows that use it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from msp_controller.dataplane import meters as of_meters
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


def read_requests() -> list[Any]:
    """What a (re)connected switch is asked before it is reconciled: flows, groups, meters."""
    return [ofmsg.flow_stats_request(), ofmsg.group_desc_request(), of_meters.meter_config_request()]


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
              groups: dict[int, tuple[Any, ...]], meters: dict[int, tuple[Any, ...]] | None = None) -> list[Any]:
    """Messages that bring a switch from what it reported (flows, groups by id, meters by
    id as meters.meter_signature) to the desired program."""
    meters = meters or {}
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
    meter_changes = []
    for meter in desired.meters:
        if meter.meter_id not in meters:
            meter_changes.append(of_meters.meter_add(meter))
        elif meters[meter.meter_id] != of_meters.desired_meter_signature(meter):
            meter_changes.append(of_meters.meter_modify(meter))
    wanted_meters = {meter.meter_id for meter in desired.meters}
    meter_deletes = [of_meters.meter_delete(mid) for mid in sorted(meters) if mid not in wanted_meters]
    return _ordered(meter_changes + group_changes, flow_adds, flow_deletes, group_deletes + meter_deletes)


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
    old_meters = {meter.meter_id: meter for meter in old.meters}
    new_meters = {meter.meter_id: meter for meter in new.meters}
    meter_changes = [of_meters.meter_add(meter) if mid not in old_meters else of_meters.meter_modify(meter)
                     for mid, meter in new_meters.items() if old_meters.get(mid) != meter]
    meter_deletes = [of_meters.meter_delete(mid) for mid in sorted(old_meters) if mid not in new_meters]
    return _ordered(meter_changes + group_changes, flow_adds, flow_deletes, group_deletes + meter_deletes)
