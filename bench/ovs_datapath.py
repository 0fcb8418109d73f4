"""What a box's userspace datapath did: per-thread packet statistics and megaflows.

The parsers are pure (they take the text of `ovs-appctl dpif-netdev/pmd-stats-show` and
`ovs-appctl dpctl/dump-flows`); the readers run those commands in one box's OVS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAIN_THREAD = "main thread"
_STAT = re.compile(r"^\s+(?P<key>[a-z][a-z .]*?):\s+(?P<value>[\d.]+)")
_PACKETS = re.compile(r"\bpackets:(\d+)")
_FIELD = re.compile(r"(?:^|,)([a-z_0-9]+)\(")


def parse_pmd_stats(text: str) -> dict[str, dict[str, float]]:
    """{thread: {statistic: value}} from pmd-stats-show. Threads: "main thread" (which
    polls every non-DPDK port) and "pmd thread numa_id N core_id M" (none here)."""
    threads: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = threads.setdefault(line.rstrip()[:-1], {})
            continue
        match = _STAT.match(line)
        if match and current is not None:
            current[match["key"]] = float(match["value"])
    return threads


@dataclass(frozen=True)
class DatapathFlow:
    match: str
    packets: int
    actions: str

    @property
    def fields(self) -> tuple[str, ...]:
        """The header fields the megaflow matches on (recirc_id, in_port, eth, ipv4, tcp...)."""
        return tuple(_FIELD.findall(_top_level(self.match)))

    @property
    def slow_path(self) -> bool:
        """Handled by ovs-vswitchd for every packet (controller, slow path) instead of the
        datapath."""
        return "userspace(" in self.actions or "slow_path" in self.actions


def _top_level(text: str) -> str:
    """text with whatever is inside parentheses removed: "eth(src=..),ipv4(..)" -> "eth(),ipv4()"."""
    out, depth = [], 0
    for char in text:
        if char == "(":
            if depth == 0:
                out.append(char)
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                out.append(char)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def parse_flows(text: str) -> list[DatapathFlow]:
    """The megaflows of a dpctl/dump-flows listing (header lines skipped)."""
    flows = []
    for line in text.splitlines():
        if ", packets:" not in line or "actions:" not in line:
            continue
        match_part = line.split(", packets:", 1)[0].strip()
        packets = _PACKETS.search(line)
        flows.append(DatapathFlow(match=match_part, packets=int(packets.group(1)) if packets else 0,
                                  actions=line.rsplit("actions:", 1)[1].strip()))
    return flows


def flow_summary(flows: list[DatapathFlow], top: int = 3) -> dict[str, Any]:
    """Counts a reader needs to judge a datapath: how many megaflows, how many send packets
    to ovs-vswitchd, and the busiest ones (fields matched, actions)."""
    busiest = sorted(flows, key=lambda f: f.packets, reverse=True)[:top]
    return {
        "megaflows": len(flows),
        "slow_path_flows": sum(1 for f in flows if f.slow_path),
        "slow_path_packets": sum(f.packets for f in flows if f.slow_path),
        "busiest": [{"packets": f.packets, "fields": list(f.fields), "actions": f.actions} for f in busiest],
    }


def pmd_stats(box: Any) -> dict[str, dict[str, float]]:
    return parse_pmd_stats(box.appctl("dpif-netdev/pmd-stats-show"))


def clear_pmd_stats(box: Any) -> None:
    box.appctl("dpif-netdev/pmd-stats-clear")


def dump_flows(box: Any) -> str:
    return str(box.appctl("dpctl/dump-flows"))
