"""What makes homenets clash: names, ids, datapath ids, overlapping prefixes.

Checked once per homenet added, in time that does not grow with the number of homenets
(hash lookups, and a bisect per prefix length for overlaps): a config of 10,000 homenets
or a REST create among them costs the same per homenet.
"""
from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from msp_controller.model.config import Edge, Homenet
from msp_controller.model.errors import FieldError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _PrefixSet:
    """Prefixes of one family, grouped by length: starts sorted, for overlap queries."""

    starts: dict[int, list[int]] = field(default_factory=dict)  # length -> sorted network addresses
    owners: dict[tuple[int, int], str] = field(default_factory=dict)  # (length, address) -> homenet

    def overlap(self, prefix: IPNetwork, ignore: str | None = None) -> tuple[str, IPNetwork] | None:
        """A prefix of another homenet (not `ignore`) that overlaps `prefix`, if any."""
        first, last = int(prefix.network_address), int(prefix.broadcast_address)
        for length, starts in self.starts.items():
            if length <= prefix.prefixlen:  # a shorter (or equal) prefix containing ours?
                container = prefix.supernet(new_prefix=length)
                owner = self.owners.get((length, int(container.network_address)))
                if owner is not None and owner != ignore:
                    return owner, container
            else:  # a longer prefix inside ours?
                index = bisect.bisect_left(starts, first)
                while index < len(starts) and starts[index] <= last:
                    owner = self.owners[(length, starts[index])]
                    if owner != ignore:
                        return owner, ipaddress.ip_network((starts[index], length))
                    index += 1
        return None

    def add(self, prefix: IPNetwork, owner: str) -> None:
        start = int(prefix.network_address)
        bisect.insort(self.starts.setdefault(prefix.prefixlen, []), start)
        self.owners[(prefix.prefixlen, start)] = owner

    def remove(self, prefix: IPNetwork) -> None:
        start = int(prefix.network_address)
        starts = self.starts.get(prefix.prefixlen, [])
        index = bisect.bisect_left(starts, start)
        if index < len(starts) and starts[index] == start:
            del starts[index]
        if not starts:
            self.starts.pop(prefix.prefixlen, None)
        self.owners.pop((prefix.prefixlen, start), None)


class HomenetIndex:
    """The homenets' unique keys; `check` says what a new or replacing homenet clashes with."""

    def __init__(self, edges: Iterable[Edge] = ()) -> None:
        self.names: set[str] = set()
        self.ids: dict[int, str] = {}
        self.dpids: dict[int, str] = {}
        for edge in edges:
            self.dpids[edge.dpid] = f"edge {edge.name}"
            self.dpids[edge.underlay_dpid] = f"edge {edge.name} underlay"
        self.prefixes = {4: _PrefixSet(), 6: _PrefixSet()}

    @staticmethod
    def _dpids(homenet: Homenet) -> list[tuple[str, int]]:
        return [("datapath_id", homenet.dpid)] + [
            (f"uplinks[{u.slot}].underlay_datapath_id", u.underlay_dpid) for u in homenet.uplinks]

    def check(self, homenet: Homenet, where: str = "homenet", replacing: str | None = None) -> None:
        """Raise FieldError naming the field of `homenet` that clashes with another homenet.

        replacing: the name of the homenet it replaces (its own keys do not clash)."""
        def other(owner: str | None) -> bool:
            return owner is not None and owner != replacing and owner != f"homenet {replacing}"

        if homenet.name in self.names and homenet.name != replacing:
            raise FieldError(f"{where}.name", f"a homenet named {homenet.name!r} exists")
        if other(self.ids.get(homenet.id)):
            raise FieldError(f"{where}.id", f"id {homenet.id} is taken by homenet {self.ids[homenet.id]!r}")
        seen: set[int] = set()
        for key, dpid in self._dpids(homenet):
            if dpid in seen or other(self.dpids.get(dpid)):
                taken = "another of its own bridges" if dpid in seen else self.dpids[dpid]
                raise FieldError(f"{where}.{key}", f"datapath id {dpid:#x} is taken by {taken}")
            seen.add(dpid)
        for index, prefix in enumerate(homenet.prefixes):
            found = self.prefixes[prefix.version].overlap(prefix, ignore=replacing)
            if found is not None:
                raise FieldError(f"{where}.prefixes[{index}]",
                                  f"{prefix} overlaps {found[1]} of homenet {found[0]!r}")

    def add(self, homenet: Homenet) -> None:
        self.names.add(homenet.name)
        self.ids[homenet.id] = homenet.name
        for _, dpid in self._dpids(homenet):
            self.dpids[dpid] = f"homenet {homenet.name}"
        for prefix in homenet.prefixes:
            self.prefixes[prefix.version].add(prefix, homenet.name)

    def remove(self, homenet: Homenet) -> None:
        self.names.discard(homenet.name)
        if self.ids.get(homenet.id) == homenet.name:
            del self.ids[homenet.id]
        for _, dpid in self._dpids(homenet):
            if self.dpids.get(dpid) == f"homenet {homenet.name}":
                del self.dpids[dpid]
        for prefix in homenet.prefixes:
            self.prefixes[prefix.version].remove(prefix)
