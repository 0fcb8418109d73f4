"""The store's interface: small on purpose, so that a replicated backend can follow."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from msp_controller.core.leases import LeaseChange


@dataclass(frozen=True)
class StoredState:
    homenets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> spec as the API took it
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> policy (API JSON)
    deleted: frozenset[str] = frozenset()  # deleted at run time: not seeded from the config again
    leases: tuple[tuple[str, str, str], ...] = ()  # DHCP bindings: (homenet, address, MAC)
    # (homenet, uplink) -> the address its ISP leased, as the box last reported it
    uplink_addresses: dict[tuple[str, str], str] = field(default_factory=dict)


class Store(Protocol):
    """Every write is atomic and durable when it returns: a crash leaves the old or the new
    state, never a mix."""

    def load(self) -> StoredState: ...

    def put_homenet(self, name: str, spec: dict[str, Any], policy: dict[str, Any] | None) -> None: ...

    def delete_homenet(self, name: str) -> None: ...

    def put_policy(self, name: str, policy: dict[str, Any]) -> None: ...

    def put_leases(self, changes: Sequence[LeaseChange]) -> None: ...
    def put_uplink_address(self, name: str, uplink: str, address: str | None) -> None: ...

    def changed_since(self, version: int) -> tuple[int, list[str]]:
        """The homenets whose spec or policy changed (or that were deleted) after version, and
        the latest version: readers elsewhere follow changes at a cost of the changes."""
        ...

    def current_version(self) -> int: ...

    def close(self) -> None: ...
