"""Flap damping: a path that keeps failing carries traffic again only once it has been up
for a while, and the more it failed, the longer that while.

Each failure (a path seen up, then down) adds 1 to the path's penalty; while the path is
up the penalty halves every `half_life_s`. A path that failed is trusted again after
`recover_s + half_life_s * log2(penalty)` seconds of being up without a failure: `recover_s`
after a single failure (long enough for BFD's fast timers to apply again, see
docs/design.md, "Flap damping"), one half-life more for each doubling of the penalty, and
never more than `max_hold_s` (the penalty is capped there). Until then the path is
"damped": the class choice puts it after every undamped path, so the data plane does not
move traffic back onto it when BFD says it is up, while failover away from any path stays
immediate. A path that never failed is never damped.

Pure and O(1) per event: the state per path is two numbers, whatever the number of
events; every function takes `now` (seconds, monotonic) and reads no clock.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from msp_controller.model.policy import Damping

K = TypeVar("K", bound=Hashable)  # a tunnel path, opaque here


def ceiling(rule: Damping) -> float:
    """The largest penalty: the one that needs exactly max_hold_s of up time."""
    return 2.0 ** ((rule.max_hold_s - rule.recover_s) / rule.half_life_s)


def hold_s(rule: Damping, penalty: float) -> float:
    """Seconds of up time a path with this penalty (as it came up) needs before it is trusted."""
    if penalty <= 0 or not rule.enabled:
        return 0.0
    return min(rule.max_hold_s, max(0.0, rule.recover_s + rule.half_life_s * math.log2(penalty)))


@dataclass(frozen=True, slots=True)
class Flaps:
    """One path's damping state: its penalty as it was when it came up (or failed), and
    since when it is up (None while down or never seen up)."""

    penalty: float = 0.0
    up_since: float | None = None

    def penalty_at(self, rule: Damping, now: float) -> float:
        """The penalty now: it decays only while the path is up."""
        if self.up_since is None:
            return self.penalty
        return self.penalty * 2.0 ** (-(now - self.up_since) / rule.half_life_s)

    def failed(self, rule: Damping, now: float) -> Flaps:
        """The path went down. Only a path seen up can fail: one that never came up (a box
        still starting) collects no penalty."""
        if self.up_since is None:
            return self
        return Flaps(min(ceiling(rule), self.penalty_at(rule, now) + 1.0), None)

    def came_up(self, now: float) -> Flaps:
        return self if self.up_since is not None else Flaps(self.penalty, now)

    def trusted_at(self, rule: Damping) -> float | None:
        """When the path, up now, is trusted again (None while it is down)."""
        if self.up_since is None:
            return None
        return self.up_since + hold_s(rule, self.penalty)

    def damped(self, rule: Damping, now: float) -> bool:
        if not rule.enabled or self.penalty <= 0:
            return False
        trusted = self.trusted_at(rule)
        return trusted is None or now < trusted


class FlapDamper(Generic[K]):
    """The damping state of many paths (one entry per path: bounded by the paths, not by
    the events). Feed it each path's liveness as it is observed; ask which are damped."""

    def __init__(self) -> None:
        self._flaps: dict[K, Flaps] = {}

    def observe(self, key: K, up: bool | None, rule: Damping, now: float) -> None:
        """up: the path is known up (True), known down (False) or not known (None: nothing
        changes, e.g. while a switch reconnects)."""
        if up is None:
            return
        before = self._flaps.get(key, Flaps())
        after = before.came_up(now) if up else before.failed(rule, now)
        if after != before:
            self._flaps[key] = after

    def damped(self, key: K, rule: Damping, now: float) -> bool:
        flaps = self._flaps.get(key)
        return flaps is not None and flaps.damped(rule, now)

    def next_trusted(self, keys: Iterable[K], rule: Damping, now: float) -> float | None:
        """The earliest time one of these paths, up but damped now, is trusted again."""
        times = [t for key in keys if (f := self._flaps.get(key)) is not None and f.damped(rule, now)
                 and (t := f.trusted_at(rule)) is not None]
        return min(times, default=None)

    def state(self, key: K) -> Flaps:
        return self._flaps.get(key, Flaps())

    def forget(self, key: K) -> None:
        self._flaps.pop(key, None)

    def __len__(self) -> int:
        return len(self._flaps)
