"""The controller keeps its long-lived state out of the garbage collector's walks (a full
collection held its event loop a second at 10,000 homenets): once after loading, and again
only each time its homenets have doubled."""
from __future__ import annotations

import gc

import pytest

from msp_controller.core.heap import GROWTH_FLOOR, Refreezer, freeze_loaded_state


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_loaded_state_is_frozen_and_later_objects_are_not(unfrozen):
    loaded = [[n] for n in range(1000)]
    frozen = freeze_loaded_state()
    assert frozen == gc.get_freeze_count() >= len(loaded)
    later = [[n] for n in range(1000)]
    assert gc.get_freeze_count() == frozen and len(later) == 1000


def test_a_growing_controller_freezes_again_only_when_its_homenets_double(unfrozen):
    refreezer = Refreezer(300)
    assert refreezer.after_growth(599) is None
    assert refreezer.after_growth(600) == gc.get_freeze_count() > 0
    assert [refreezer.after_growth(n) is not None for n in range(601, 5000)].count(True) == 3  # 1200, 2400, 4800
    small = Refreezer(0)
    assert small.after_growth(2 * GROWTH_FLOOR - 1) is None and small.after_growth(2 * GROWTH_FLOOR) is not None
