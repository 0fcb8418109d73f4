"""How many packets per second each switch may send the controller, per reason ([flood]).

Every packet-in is work on the controller's one event loop; these caps keep a flood
on one switch from delaying every other homenet's events (docs/design.md, "Flood protection").
"""
from __future__ import annotations

from dataclasses import dataclass

# The controller sends at most this many probes per second in all (core/msp.py,
# PROBE_BUDGET_PPS); an edge's probe meter below it would lose probes and misjudge SLAs.
PROBE_BUDGET_PPS = 2000
MAX_PUNT_PPS = 100_000


@dataclass(frozen=True)
class PuntRates:
    # ARP and ND from a LAN or the Internet link: a few hundred hosts re-confirm their
    # gateway every 15-45 s (about 10/s); ten times that leaves room for a busy LAN.
    neighbor_pps: int = 100
    # Packets for homenet addresses not yet resolved: each costs a solicitation on every
    # LAN port; a homenet's new hosts appear a few at a time.
    unresolved_pps: int = 100
    # Reflected probes at an edge: the controller's whole probe budget may be on one edge.
    probe_pps: int = 2500
    # DHCP and router solicitations from hosts: a LAN of a few hundred hosts renewing,
    # or all booting at once (each retries within seconds).
    autoconf_pps: int = 50

    def pps(self, reason: str) -> int:
        """The rate of a reason by its lower-case name (meters.PuntReason)."""
        return int(getattr(self, f"{reason}_pps"))


REASONS = ("neighbor", "unresolved", "probe", "autoconf")
