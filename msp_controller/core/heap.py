"""The controller's heap once it has loaded its homenets, moved out of the garbage collector's
sight. A full collection walks every tracked object, and the event loop waits for it: at
10,000 homenets, 1.26 million objects and 1.1 s during which port status, BFD and probes were
not handled (bench/api_hold.py). What loading built lives as long as the controller,
so walking it again and again finds nothing; objects made later are collected as before.
"""
from __future__ import annotations

import gc


def freeze_loaded_state() -> int:
    """Collect what loading left behind, then freeze the rest; returns how many objects are
    frozen. Once, after loading: a cycle frozen and then dropped would never be freed."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


GROWTH_FLOOR = 100  # homenets: below twice this, growth is not worth a freeze


class Refreezer:
    """For a controller that grows by REST after it loaded: freezes again each time its
    homenets have doubled since the last freeze, so at most log2(N) times. Without a
    collection first (that would hold the loop as long as the collection it avoids): what
    cyclic garbage exists at that moment is kept, a bounded amount, bounded times."""

    def __init__(self, homenets: int) -> None:
        self.frozen_at = homenets

    def after_growth(self, homenets: int) -> int | None:
        """The objects frozen now, or None when the homenets have not doubled."""
        if homenets < 2 * max(self.frozen_at, GROWTH_FLOOR):
            return None
        self.frozen_at = homenets
        gc.freeze()
        return gc.get_freeze_count()
