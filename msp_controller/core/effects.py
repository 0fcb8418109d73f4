"""What an event asks the shell to do: OpenFlow messages by datapath, and BGP changes."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msp_controller.core.leases import LeaseChange
from msp_controller.decide.announce import Route

# prefix -> neighbor address -> how to announce it there; an empty mapping withdraws the
# prefix everywhere. Only the prefixes an event changed are listed.
BgpChanges = dict[str, dict[str, Route]]


class Effects(dict[int, list[Any]]):
    """Messages by datapath id (the mapping itself, in send order) plus `bgp`, the prefixes
    whose announcements changed, and `touched`, the homenets whose state was recomputed (what
    the live dashboard re-reads). A plain mapping of messages is accepted wherever Effects is."""

    def __init__(self, messages: Mapping[int, list[Any]] | None = None, bgp: BgpChanges | None = None) -> None:
        super().__init__()
        self.bgp: BgpChanges = dict(bgp or {})
        self.leases: list[LeaseChange] = []  # DHCP bindings for the store (core/leases.py)
        self.touched: set[str] = set()
        if messages:
            self.merge(messages)

    def add(self, dpid: int, messages: list[Any]) -> None:
        if messages:
            self.setdefault(dpid, []).extend(messages)

    def merge(self, other: Mapping[int, list[Any]]) -> Effects:
        for dpid, messages in other.items():
            self.add(dpid, messages)
        if isinstance(other, Effects):
            self.bgp.update(other.bgp)
            self.leases.extend(other.leases)
            self.touched |= other.touched
        return self
