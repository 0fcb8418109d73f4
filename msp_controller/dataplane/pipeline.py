"""Each switch role's table pipeline, declared as data; every flow is checked against it."""
from __future__ import annotations

from dataclasses import dataclass

from msp_controller.dataplane.meters import PUNT_METER_IDS
from msp_controller.dataplane.ofmsg import CONTROLLER, Flow, Multipath, Output, SetField

L3_MATCH = frozenset({"in_port", "eth_type", "eth_src", "eth_dst", "ip_proto", "ip_dscp",
                      "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "tcp_src", "tcp_dst",
                      "udp_src", "udp_dst", "icmpv4_type", "icmpv6_type", "arp_op", "arp_tpa"})
REWRITES = frozenset({"eth_src", "eth_dst", "ip_dscp"})
# A balanced class tags reg0 with its group id and the flow's hash link (multipath).
BALANCE_TAG = "reg0"


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    matches: frozenset[str]
    next_tables: frozenset[int] = frozenset()
    set_fields: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Pipeline:
    role: str
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def check(self, flow: Flow) -> None:
        """Raise ValueError if a flow does not fit the declared pipeline (a controller bug)."""
        tables = {t.id: t for t in self.tables}
        if flow.table not in tables:
            raise ValueError(f"{self.role}: no table {flow.table} for {flow}")
        table = tables[flow.table]
        extra = {name for name, _ in flow.match} - table.matches
        if extra:
            raise ValueError(f"{self.role}/{table.name}: cannot match on {sorted(extra)}")
        if flow.goto is not None and flow.goto not in table.next_tables:
            raise ValueError(f"{self.role}/{table.name}: cannot go to table {flow.goto}")
        if any(isinstance(a, Output) and a.port == CONTROLLER for a in flow.actions) and \
                flow.meter not in PUNT_METER_IDS:
            raise ValueError(f"{self.role}/{table.name}: a controller-bound flow needs a punt meter "
                             f"(meters.PuntReason): {flow}")
        for action in flow.actions:
            written = action.name if isinstance(action, SetField) else \
                action.register if isinstance(action, Multipath) else None
            if written is not None and written not in table.set_fields:
                raise ValueError(f"{self.role}/{table.name}: cannot set {written}")


# MSPMB (br-home): hosts on LAN ports, tunnels to the edges.
MSPMB_CLASSIFY, MSPMB_EGRESS, MSPMB_DELIVER, MSPMB_BALANCE = 0, 1, 2, 3
MSPMB = Pipeline("mspmb", (
    Table(MSPMB_CLASSIFY, "classify", L3_MATCH, frozenset({MSPMB_EGRESS, MSPMB_DELIVER})),
    Table(MSPMB_EGRESS, "egress", L3_MATCH, frozenset({MSPMB_DELIVER, MSPMB_BALANCE}),
          REWRITES | {BALANCE_TAG}),
    Table(MSPMB_DELIVER, "deliver", frozenset({"eth_type", "ipv4_dst", "ipv6_dst"}),
          set_fields=REWRITES),
    Table(MSPMB_BALANCE, "balance", frozenset({BALANCE_TAG})),
))

# Edge (br-msp): tunnels from homenets, one Internet port.
TUNNEL_MATCH = frozenset({"tunnel_id", "tun_ipv4_src"})
EDGE_CLASSIFY, EDGE_EGRESS, EDGE_INGRESS, EDGE_BALANCE = 0, 1, 2, 3
EDGE = Pipeline("edge", (
    # Shared tunnel ports: a homenet's packets by key and its box's address; BFD goes back.
    Table(EDGE_CLASSIFY, "classify", L3_MATCH | TUNNEL_MATCH, frozenset({EDGE_EGRESS, EDGE_INGRESS}),
          frozenset({"tun_ipv4_dst"})),
    Table(EDGE_EGRESS, "egress", L3_MATCH, frozenset({EDGE_INGRESS}), REWRITES | {"in_port"}),
    Table(EDGE_INGRESS, "ingress", L3_MATCH, frozenset({EDGE_BALANCE}), REWRITES | {BALANCE_TAG}),
    Table(EDGE_BALANCE, "balance", frozenset({BALANCE_TAG})),
))

# Underlay bridges (br-<isp> at the MSPMB, br-up at the edge): admit only tunnel traffic.
UNDERLAY = Pipeline("underlay", (
    Table(0, "admit", frozenset({"in_port", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst",
                                 "udp_src", "udp_dst"})),
))
