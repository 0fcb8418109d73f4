"""Port ranges as masked matches: every port of the range exactly once, nothing else, few pairs."""
from __future__ import annotations

import itertools
import random

import pytest

from msp_controller.model.portranges import (
    MAX_PORT,
    PortRange,
    masks_to_ranges,
    range_to_masks,
)


def _covered(pairs: list[tuple[int, int]], bits: int) -> list[int]:
    """Every value matched, by brute force, once per pair that matches it."""
    return [port for port in range(1 << bits) for value, mask in pairs if port & mask == value]


def _assert_tiles(pairs: list[tuple[int, int]], low: int, high: int, bits: int = 16) -> None:
    blocks = masks_to_ranges(pairs, bits)  # also checks each pair is an aligned block
    assert blocks[0].low == low and blocks[-1].high == high
    for before, after in itertools.pairwise(blocks):
        assert after.low == before.high + 1  # no gap, no overlap


def _fewest_aligned_blocks(high: int, bits: int) -> list[int]:
    """fewest[low]: the fewest aligned blocks that tile low..high, by dynamic programming."""
    fewest = [0] * (high + 2)
    for low in range(high, -1, -1):
        best = None
        size = 1
        while size <= 1 << bits and low % size == 0 and low + size - 1 <= high:
            candidate = 1 + fewest[low + size]
            best = candidate if best is None else min(best, candidate)
            size <<= 1
        fewest[low] = best if best is not None else 0
    return fewest


KNOWN = {
    # (low, high): number of pairs. Where that equals the popcount of the range's size, no
    # cover by any masks can do better: every pair covers a power of two of ports.
    (1, 65535): 16,
    (16384, 32767): 1,
    (1024, 65535): 6,
    (0, 65535): 1,
    (80, 80): 1,
    (32768, 65535): 1,
    (49152, 65535): 1,
    (8000, 8080): 3,
    (27000, 27100): 6,
    (1, 2): 2,
}


@pytest.mark.parametrize("low,high", sorted(KNOWN))
def test_known_ranges(low, high):
    pairs = range_to_masks(low, high)
    assert len(pairs) == KNOWN[(low, high)]
    _assert_tiles(pairs, low, high)


def test_known_optimal_against_any_masks():
    for low, high in [(1, 65535), (16384, 32767), (1024, 65535), (0, 65535), (49152, 65535)]:
        assert len(range_to_masks(low, high)) == (high - low + 1).bit_count()


def test_exact_pairs():
    assert range_to_masks(16384, 32767) == [(0x4000, 0xC000)]
    assert range_to_masks(0, 65535) == [(0, 0)]
    assert range_to_masks(443, 443) == [(443, 0xFFFF)]
    assert range_to_masks(1024, 65535) == [
        (0x0400, 0xFC00), (0x0800, 0xF800), (0x1000, 0xF000), (0x2000, 0xE000), (0x4000, 0xC000), (0x8000, 0x8000),
    ]


def test_every_small_range_exactly_once_by_brute_force():
    bits = 6
    for low in range(1 << bits):
        for high in range(low, 1 << bits):
            assert _covered(range_to_masks(low, high, bits), bits) == list(range(low, high + 1))


def test_every_8_bit_range_is_tiled_with_the_fewest_aligned_blocks():
    bits = 8
    for high in range(1 << bits):
        fewest = _fewest_aligned_blocks(high, bits)
        for low in range(high + 1):
            pairs = range_to_masks(low, high, bits)
            _assert_tiles(pairs, low, high, bits)
            assert len(pairs) == fewest[low], (low, high)
            assert len(pairs) <= 2 * bits - 2


def test_16_bit_ranges_are_minimal_for_every_low_below_the_top():
    fewest = _fewest_aligned_blocks(MAX_PORT, 16)
    for low in list(range(70)) + list(range(1000, 1100)) + list(range(65400, 65536)):
        assert len(range_to_masks(low, MAX_PORT)) == fewest[low]


def test_random_16_bit_ranges_are_tiled_exactly():
    rng = random.Random(4789)
    for _ in range(3000):
        low, high = sorted(rng.randrange(MAX_PORT + 1) for _ in range(2))
        pairs = range_to_masks(low, high)
        _assert_tiles(pairs, low, high)
        assert len(pairs) <= 30


def test_a_few_16_bit_ranges_by_brute_force():
    for low, high in [(1, 65535), (8000, 8080), (27000, 27100), (12345, 54321)]:
        covered = _covered(range_to_masks(low, high), 16)
        assert covered == list(range(low, high + 1))


def test_bad_ranges_are_refused():
    for low, high in [(5, 4), (-1, 10), (0, 65536)]:
        with pytest.raises(ValueError):
            range_to_masks(low, high)
        with pytest.raises(ValueError):
            PortRange(low, high)
    with pytest.raises(ValueError):
        masks_to_ranges([(0x0001, 0xFF00)])  # value has bits outside the mask
    with pytest.raises(ValueError):
        masks_to_ranges([(0, 0xF0F0)])  # not a prefix mask


def test_port_range_helpers():
    web = PortRange(8000, 8080)
    assert 8000 in web and 8080 in web and 8081 not in web and "8000" not in web
    assert str(web) == "8000-8080" and str(PortRange.single(443)) == "443"
    assert web.size == 81
    assert web.overlaps(PortRange(8080, 9000)) and not web.overlaps(PortRange(8081, 9000))
    assert sorted([PortRange(443, 443), PortRange(80, 80)]) == [PortRange(80, 80), PortRange(443, 443)]
    assert web.masks() == range_to_masks(8000, 8080)
