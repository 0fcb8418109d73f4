"""TCP/UDP port ranges, and how to express them as masked OpenFlow matches.

OpenFlow 1.3 can match tcp_dst/udp_dst (and the source ports) with a bit mask. A range of
ports becomes a set of (value, mask) pairs, each covering an aligned block of 2^k ports;
range_to_masks() returns the fewest such blocks, disjoint, that cover the range exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

PORT_BITS = 16
MAX_PORT = (1 << PORT_BITS) - 1
FULL_MASK = MAX_PORT


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive range of port numbers, low..high."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high <= MAX_PORT:
            raise ValueError(f"bad port range {self.low}-{self.high}")

    @classmethod
    def single(cls, port: int) -> PortRange:
        return cls(port, port)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.low <= other.high and other.low <= self.high

    def masks(self) -> list[tuple[int, int]]:
        return range_to_masks(self.low, self.high)


def range_to_masks(low: int, high: int, bits: int = PORT_BITS) -> list[tuple[int, int]]:
    """Disjoint (value, mask) pairs whose matches are exactly the ports low..high, fewest first.

    A packet's port p matches a pair when p & mask == value. Each pair covers an aligned
    block of 2^k ports (mask has the top bits-k bits set). Taking, at each step, the
    largest aligned block that starts at `low` and stays inside the range gives the fewest
    such blocks: a cover must have a block starting at `low`, and a larger one never
    leaves more blocks for the rest. A range needs at most 2*bits-2 pairs.

    Masks with holes could sometimes do slightly better (1..6 in 3 bits: 0x1, 10x, x10
    instead of 4 blocks), but not when the count equals the number of one bits in the
    range's size, since each pair covers a power of two: 1-65535 (16), 1024-65535 (6),
    16384-32767 (1) are optimal against any masks.
    """
    top = (1 << bits) - 1
    if not 0 <= low <= high <= top:
        raise ValueError(f"bad range {low}-{high} for {bits}-bit values")
    pairs: list[tuple[int, int]] = []
    while low <= high:
        size = _largest_aligned_block(low, high, bits)
        pairs.append((low, top & ~(size - 1)))
        low += size
    return pairs


def _largest_aligned_block(start: int, high: int, bits: int) -> int:
    # Alignment: start's lowest set bit (any size at all for 0); then shrink to fit.
    size = start & -start if start else 1 << bits
    while start + size - 1 > high:
        size >>= 1
    return size


def masks_to_ranges(pairs: list[tuple[int, int]], bits: int = PORT_BITS) -> list[PortRange]:
    """The blocks that prefix-style (value, mask) pairs stand for, as ranges; for checks."""
    top = (1 << bits) - 1
    ranges = []
    for value, mask in pairs:
        span = top & ~mask
        if span & (span + 1) or value & span:
            raise ValueError(f"({value:#x}, {mask:#x}) is not an aligned block")
        ranges.append(PortRange(value, value | span))
    return ranges
