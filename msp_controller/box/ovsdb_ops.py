"""A box's OVSDB as the controller sees it (a replica fed by monitor updates), and the
transaction that brings one BridgeSpec about (RFC 7047 operations, pure).

Only additions and changes, and removal of the spec owner's own ports: a port another
homenet or the box itself owns is never touched, and nothing is flushed.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msp_controller.box.desired import OWNER, BridgeSpec, PortSpec

Json = Any
DB = "Open_vSwitch"

# What the controller watches in a box: enough to diff bridges and to read leases and BFD.
MONITOR_COLUMNS: dict[str, list[str]] = {
    "Open_vSwitch": ["bridges", "external_ids"],
    "Bridge": ["name", "ports", "external_ids"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "options", "bfd", "bfd_status", "external_ids"],
}


def ovsdb_map(values: Mapping[str, object]) -> Json:
    return ["map", [[k, str(v)] for k, v in sorted(values.items())]]


def decode(value: Json) -> Any:
    """An OVSDB JSON value as Python: map -> dict, set -> list, uuid -> str."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == "map":
            return {decode(k): decode(v) for k, v in body}
        if kind == "set":
            return [decode(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


def as_list(value: Any) -> list[Any]:
    """A decoded set column: one element comes bare, none as an empty set."""
    return value if isinstance(value, list) else [value]


class Replica:
    """Rows by table and uuid, decoded, from a monitor's initial reply and its updates."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in MONITOR_COLUMNS}

    def apply(self, update: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        for table, rows in update.items():
            mine = self.tables.setdefault(table, {})
            for uuid, change in rows.items():
                new = change.get("new")
                if new is None:
                    mine.pop(uuid, None)
                else:
                    mine[uuid] = {column: decode(value) for column, value in new.items()}

    def root_external_ids(self) -> dict[str, str]:
        for row in self.tables["Open_vSwitch"].values():
            return dict(row.get("external_ids") or {})
        return {}

    def bridge(self, name: str) -> tuple[str, dict[str, Any]] | None:
        for uuid, row in self.tables["Bridge"].items():
            if row.get("name") == name:
                return uuid, row
        return None

    def ports(self, bridge_row: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
        """The bridge's ports by name: (port uuid, port row, its first interface's row)."""
        found = {}
        for uuid in as_list(bridge_row.get("ports", [])):
            port = self.tables["Port"].get(uuid)
            if port is None:
                continue
            interfaces = as_list(port.get("interfaces", []))
            iface = self.tables["Interface"].get(interfaces[0], {}) if interfaces else {}
            found[port["name"]] = (uuid, port, iface)
        return found

    def interface(self, name: str) -> dict[str, Any] | None:
        for row in self.tables["Interface"].values():
            if row.get("name") == name:
                return row
        return None


def monitor_request(monitor_id: Json) -> Json:
    return [DB, monitor_id, {table: {"columns": columns} for table, columns in MONITOR_COLUMNS.items()}]


def _interface_row(spec: PortSpec) -> dict[str, Json]:
    row: dict[str, Json] = {"name": spec.name, "external_ids": ovsdb_map(spec.external_ids)}
    if spec.type:
        row.update(type=spec.type, options=ovsdb_map(spec.options), bfd=ovsdb_map(spec.bfd))
    return row


def _insert_port(spec: PortSpec, tag: str) -> list[Json]:
    return [
        {"op": "insert", "table": "Interface", "row": _interface_row(spec), "uuid-name": f"i{tag}"},
        {"op": "insert", "table": "Port", "uuid-name": f"p{tag}",
         "row": {"name": spec.name, "interfaces": ["named-uuid", f"i{tag}"],
                 "external_ids": ovsdb_map(spec.external_ids)}},
    ]


def _differs(spec: PortSpec, iface: Mapping[str, Any]) -> bool:
    if not spec.type:
        return False  # a system port: nothing of ours to keep in step
    return (iface.get("type") != spec.type or dict(iface.get("options") or {}) != dict(spec.options)
            or dict(iface.get("bfd") or {}) != dict(spec.bfd)
            or dict(iface.get("external_ids") or {}) != dict(spec.external_ids))


def bridge_operations(replica: Replica, spec: BridgeSpec) -> list[Json]:
    """The operations (possibly none) that make the box hold spec."""
    found = replica.bridge(spec.name)
    if found is None:
        ops: list[Json] = []
        for n, port in enumerate(spec.ports):
            ops += _insert_port(port, str(n))
        ops.append({"op": "insert", "table": "Controller", "uuid-name": "ctl",
                    "row": {"target": spec.controller, **spec.controller_settings}})
        ops.append({"op": "insert", "table": "Bridge", "uuid-name": "br", "row": {
            "name": spec.name, "datapath_type": "netdev", "fail_mode": spec.fail_mode,
            "protocols": ["set", list(spec.protocols)], "other_config": ovsdb_map(spec.other_config),
            "external_ids": ovsdb_map(spec.external_ids),
            "controller": ["named-uuid", "ctl"],
            "ports": ["set", [["named-uuid", f"p{n}"] for n in range(len(spec.ports))]]}})
        ops.append({"op": "mutate", "table": "Open_vSwitch", "where": [],
                    "mutations": [["bridges", "insert", ["set", [["named-uuid", "br"]]]]]})
        return ops
    bridge_uuid, bridge_row = found
    existing = replica.ports(bridge_row)
    ops, added, removed = [], [], []
    for n, port in enumerate(spec.ports):
        if port.name not in existing:
            ops += _insert_port(port, str(n))
            added.append(["named-uuid", f"p{n}"])
        elif _differs(port, existing[port.name][2]):
            iface_uuid = as_list(existing[port.name][1]["interfaces"])[0]
            ops.append({"op": "update", "table": "Interface", "where": [["_uuid", "==", ["uuid", iface_uuid]]],
                        "row": {k: v for k, v in _interface_row(port).items() if k != "name"}})
    wanted = {p.name for p in spec.ports} | set(spec.keep)
    for name, (port_uuid, port_row, _iface) in existing.items():
        if name not in wanted and (port_row.get("external_ids") or {}).get(OWNER) == spec.owner:
            removed.append(["uuid", port_uuid])
    mutations: list[Json] = []
    current = dict(bridge_row.get("external_ids") or {})
    stale = sorted(k for k, v in spec.external_ids.items() if current.get(k) != v)
    if stale:  # replace only our keys: delete the old values, then insert (mutations apply in order)
        if old := [k for k in stale if k in current]:
            mutations.append(["external_ids", "delete", ["set", old]])
        mutations.append(["external_ids", "insert", ovsdb_map({k: spec.external_ids[k] for k in stale})])
    if added:
        mutations.append(["ports", "insert", ["set", added]])
    if removed:
        mutations.append(["ports", "delete", ["set", removed]])
    if mutations:
        ops.append({"op": "mutate", "table": "Bridge", "where": [["_uuid", "==", ["uuid", bridge_uuid]]],
                    "mutations": mutations})
    return ops
