"""A guard that proves no packet of a run leaves the machine: nftables in the root namespace.

The project's traffic never needs the root namespace's own interfaces: the controller lives in
its namespace (topologies/control_ns.py) and every node in its own. The guard counts and drops,
in the root namespace,
  - anything forwarded out of the project's interfaces (the operator link) to another one,
  - anything sent by the root namespace itself to or from the project's address ranges by any
    interface but loopback and the project's own,
and records each such packet's destination, protocol and port. At the end the count must be
0, or the run fails and says what tried to leave. Counting happens before the packet reaches
a device, and the packet is dropped: the guard itself lets nothing out.

    with LeakGuard() as guard:   # table inet msp_guard_<pid>_<n>, removed by name
        ...
    # raises LeakError on exit if anything was counted
"""
from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

# The ranges every emulated network of the project is numbered from: RFC 2544 benchmarking
# (ISPs, Internet, management, operator link) and the documentation ranges (PI prefixes,
# servers). 192.0.2.0/24 is left out on purpose: this machine's own eth0 is numbered from it.
PROJECT_RANGES = ("198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
# Every interface the project makes in the root namespace is named msp-* (the operator link
# msp-op, test links): they lead only into the project's own namespaces.
PROJECT_INTERFACES = ("msp-*",)
TABLE_PREFIX = "msp_guard_"
_serial = itertools.count()


class LeakError(AssertionError):
    pass


@dataclass(frozen=True)
class Leak:
    destination: str
    protocol: str
    port: int | None
    packets: int

    def __str__(self) -> str:
        where = f"{self.destination} {self.protocol}" + (f"/{self.port}" if self.port is not None else "")
        return f"{where}: {self.packets} packet(s)"


def _nft(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["nft", *args], input=input, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _split(ranges: Iterable[str]) -> tuple[list[str], list[str]]:
    nets = [ipaddress.ip_network(r, strict=False) for r in ranges]
    return ([str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6])


def ruleset(table: str, ranges: Iterable[str] = PROJECT_RANGES,
            project_interfaces: Iterable[str] = PROJECT_INTERFACES) -> str:
    v4, v6 = _split(ranges)
    ours = ", ".join(f'"{name}"' for name in ("lo", *project_interfaces))
    project = ", ".join(f'"{name}"' for name in project_interfaces)
    # Each leak is recorded twice: in a per-destination set (what leaked) and a plain counter
    # (how much), so that a packet no set can key (no transport port) still counts.
    record4 = "add @leaks4 { ip daddr . meta l4proto . th dport }"
    record6 = "add @leaks6 { ip6 daddr . meta l4proto . th dport }"
    lines = [
        f"table inet {table} {{",
        "  set leaks4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; counter; }",
        "  set leaks6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; size 4096; counter; }",
        "  set other4 { type ipv4_addr . inet_proto; flags dynamic; size 4096; counter; }",
        "  set other6 { type ipv6_addr . inet_proto; flags dynamic; size 4096; counter; }",
        "  counter leaked { }",
        "  chain leak {",
        f"    meta l4proto {{ tcp, udp, sctp }} meta nfproto ipv4 {record4}",
        f"    meta l4proto {{ tcp, udp, sctp }} meta nfproto ipv6 {record6}",
        "    meta l4proto != { tcp, udp, sctp } meta nfproto ipv4 add @other4 { ip daddr . meta l4proto }",
        "    meta l4proto != { tcp, udp, sctp } meta nfproto ipv6 add @other6 { ip6 daddr . meta l4proto }",
        '    counter name "leaked" drop',
        "  }",
        "  chain forward { type filter hook forward priority -300; policy accept;",
        f"    iifname {{ {project} }} oifname != {{ {ours} }} jump leak",
        "  }",
        "  chain output { type filter hook output priority -300; policy accept;",
        f"    oifname {{ {ours} }} accept",
    ]
    if v4:
        lines += [f"    ip daddr {{ {', '.join(v4)} }} jump leak", f"    ip saddr {{ {', '.join(v4)} }} jump leak"]
    if v6:
        lines += [f"    ip6 daddr {{ {', '.join(v6)} }} jump leak", f"    ip6 saddr {{ {', '.join(v6)} }} jump leak"]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class LeakGuard:
    """Count (and drop) packets of the project that would leave the machine; see the module doc."""

    def __init__(self, ranges: Iterable[str] = PROJECT_RANGES,
                 project_interfaces: Iterable[str] = PROJECT_INTERFACES) -> None:
        self.table = f"{TABLE_PREFIX}{os.getpid()}_{next(_serial)}"
        self.ranges = tuple(ranges)
        self.project_interfaces = tuple(project_interfaces)
        self.active = False
        self.final_count: int | None = None  # what count() said just before stop() removed the table

    def start(self) -> LeakGuard:
        _nft("-f", "-", input=ruleset(self.table, self.ranges, self.project_interfaces))
        self.active = True
        return self

    def count(self) -> int:
        data = json.loads(_nft("-j", "list", "counter", "inet", self.table, "leaked"))
        for item in data.get("nftables", []):
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise RuntimeError(f"guard {self.table}: counter not found")

    def leaks(self) -> list[Leak]:
        found = []
        for name in ("leaks4", "leaks6", "other4", "other6"):
            data = json.loads(_nft("-j", "list", "set", "inet", self.table, name))
            for item in data.get("nftables", []):
                for element in item.get("set", {}).get("elem", []):
                    found.append(_leak(element))
        return found

    def stop(self) -> None:
        """Remove the table, by name."""
        if self.active:
            try:
                self.final_count = self.count()
            except (RuntimeError, ValueError):
                pass
            _nft("delete", "table", "inet", self.table, check=False)
            self.active = False

    def check(self) -> None:
        """Raise LeakError naming what tried to leave, if anything did."""
        count = self.count()
        if count:
            details = "; ".join(str(leak) for leak in self.leaks()) or "no details recorded"
            raise LeakError(f"{count} packet(s) tried to leave the machine: {details}")

    def __enter__(self) -> LeakGuard:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                self.check()
        finally:
            self.stop()


def _leak(element: dict) -> Leak:
    elem = element.get("elem", element)
    parts = elem["val"]["concat"]
    packets = int(elem.get("counter", {}).get("packets", 0))
    port = int(parts[2]) if len(parts) > 2 else None
    return Leak(str(parts[0]), str(parts[1]), port, packets)


def stale_tables() -> list[str]:
    """Guard tables whose process is gone (a run killed before it could remove them)."""
    data = json.loads(_nft("-j", "list", "tables", "inet") or "{}")
    stale = []
    for item in data.get("nftables", []):
        name = item.get("table", {}).get("name", "")
        if name.startswith(TABLE_PREFIX):
            pid = name[len(TABLE_PREFIX):].split("_")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                stale.append(name)
    return stale


def remove_stale_tables() -> list[str]:
    removed = stale_tables()
    for name in removed:
        _nft("delete", "table", "inet", name, check=False)
    return removed
