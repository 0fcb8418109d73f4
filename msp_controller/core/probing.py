"""Which tunnel paths get a probe now, within a fixed budget of probes per second.

Probes are packet-outs through the controller's one event loop, so their total rate is
capped (`budget_pps`), whatever the number of homenets: the cost of probing is bounded by
construction. Within the cap, paths that an sla class depends on are probed every
`interval_s` (their verdicts need the samples); every other path shares what is left, so a
small MSP measures every path as often as the sla ones, and a large one measures them
now and then (their liveness comes from BFD in the data plane anyway). When even the sla
paths need more than the budget, all are slowed alike and `saturated` says so.

Each tick costs O(probes sent) (a heap of due times), not O(paths).
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class ProbeScheduler(Generic[P]):
    def __init__(self, budget_pps: float = 2000.0, interval_s: float = 0.05) -> None:
        self.budget_pps = budget_pps
        self.interval_s = interval_s
        self.sla: dict[P, bool] = {}  # every scheduled path -> does an sla class depend on it
        # Two queues of (due, serial, path): sla paths are served first, every tick.
        self._queues: dict[bool, list[tuple[float, int, P]]] = {True: [], False: []}
        self._serial = itertools.count()
        self._tokens = 0.0
        self._last: float | None = None
        self._sla_count = 0
        self.saturated = False  # the last tick left due probes unsent for want of budget

    def add(self, path: P, sla: bool, now: float) -> None:
        """Schedule a path (first probe now), or change whether an sla class depends on it."""
        old = self.sla.get(path)
        if old == sla:
            return
        self._sla_count += int(sla) - int(bool(old))
        self.sla[path] = sla
        heapq.heappush(self._queues[sla], (now, next(self._serial), path))

    def remove(self, path: P) -> None:
        if path in self.sla:
            self._sla_count -= int(self.sla.pop(path))  # its queue entry is skipped when it comes up

    def sla_count(self) -> int:
        return self._sla_count

    def interval(self, path: P) -> float:
        """How often this path is probed, all paths sharing the budget."""
        if self.sla.get(path):
            return max(self.interval_s, self._sla_count / self.budget_pps)
        spare = max(self.budget_pps - self._sla_count / self.interval_s, self.budget_pps * 0.1)
        return max(self.interval_s, (len(self.sla) - self._sla_count) / spare)

    def due(self, now: float) -> list[P]:
        """The paths to probe now (each then rescheduled one interval later)."""
        elapsed = self.interval_s if self._last is None else now - self._last
        self._tokens = min(self._tokens + elapsed * self.budget_pps, self.budget_pps * self.interval_s * 2)
        self._last = now
        # Half a tick of slack: a tick that comes a little early must not skip a path.
        horizon = now + self.interval_s / 2
        chosen: list[P] = []
        for sla in (True, False):
            queue = self._queues[sla]
            while queue and queue[0][0] <= horizon and self._tokens >= 1.0:
                due, _, path = heapq.heappop(queue)
                if self.sla.get(path) is not sla:
                    continue  # removed, or moved to the other queue, since it was scheduled
                chosen.append(path)
                self._tokens -= 1.0
                heapq.heappush(queue, (max(due, now - self.interval_s) + self.interval(path), next(self._serial), path))
        self.saturated = any(q and q[0][0] <= now for q in self._queues.values()) and self._tokens < 1.0
        return chosen
