"""When each edge's shaper last asked for its shaping, and which version it had applied then:
the operator's view of whether every edge's downstream shaping follows the policies (GET
/api/v1/health, /metrics). A shaper that stops asking leaves its port as it was, shaped by
policies that may have changed since: nothing else would say so.

Only what the shapers' requests say, kept in memory: a restarted controller knows again
within a poll (the shapers ask twice a second). One entry an edge, never one a homenet.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SILENT_AFTER_S = 10.0  # twenty polls missed: the shaper is not running, or cannot reach the API


@dataclass(frozen=True)
class ShaperSeen:
    at: float  # the clock's time of its last request
    applied: int | None  # the version it had applied (its `since`); None: it asked for everything


class EdgeShapersSeen:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._seen: dict[str, ShaperSeen] = {}

    def asked(self, edge: str, since: int | None) -> None:
        self._seen[edge] = ShaperSeen(self.clock(), since)

    def view(self, edges: Iterable[str], current_version: int) -> dict[str, dict[str, Any]]:
        """For each edge: seconds since its shaper asked (None: never since this controller
        started), the version it had applied, how many versions it was behind the store's
        current one, and whether it has gone silent."""
        now = self.clock()
        found: dict[str, dict[str, Any]] = {}
        for edge in edges:
            seen = self._seen.get(edge)
            if seen is None:
                found[edge] = {"seen_s_ago": None, "applied_version": None, "versions_behind": None, "silent": False}
                continue
            ago = now - seen.at
            found[edge] = {"seen_s_ago": round(ago, 3), "applied_version": seen.applied,
                           "versions_behind": None if seen.applied is None else max(0, current_version - seen.applied),
                           "silent": ago > SILENT_AFTER_S}
        return found
