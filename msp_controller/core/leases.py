"""One homenet's DHCPv4 leases: who holds which pool address until when. Pure, clock passed in.

An OFFER reserves an address for OFFER_HOLD_S only, and at most MAX_OFFERS are outstanding
(the oldest is dropped first): a host sending DISCOVERs from ever new MACs holds a bounded
number of addresses for seconds, never the pool. A bound lease lasts its lease time and is
renewed by its holder; once expired, its address is handed out again, least recently held
first. Bindings (an address given to a new MAC, or released) are reported as LeaseChange
for the store: renewals are not written, and a lease restored after a restart counts as
fresh for one lease time (what expired meanwhile is not handed to another host too early).
"""
from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPv4Address = ipaddress.IPv4Address

OFFER_HOLD_S = 30.0  # a client requests within seconds of an offer
MAX_OFFERS = 64  # outstanding offers per homenet
DECLINE_HOLD_S = 600.0  # an address a client found in use is not offered again for this long


@dataclass
class Lease:
    ip: IPv4Address
    mac: str  # "" for a declined address (someone unknown uses it)
    expires: float
    bound: bool  # False: an offer, reserved until `expires`


@dataclass(frozen=True)
class LeaseChange:
    """A binding for the store: mac None means the address is free again."""

    homenet: str
    ip: str
    mac: str | None


# Another host already uses this address (a static host the gateway learned): skip it.
InUse = Callable[[IPv4Address, str], bool]


def _never(ip: IPv4Address, mac: str) -> bool:
    return False


class LeaseBook:
    def __init__(self, homenet: str, pool_start: IPv4Address, pool_end: IPv4Address, lease_s: int,
                 reserved: Iterable[IPv4Address] = ()) -> None:
        self.homenet = homenet
        self.start, self.size = int(pool_start), int(pool_end) - int(pool_start) + 1
        self.lease_s = lease_s
        self.reserved = frozenset(reserved)  # never handed out (the gateway's own address)
        self.by_ip: dict[IPv4Address, Lease] = {}
        self.by_mac: dict[str, IPv4Address] = {}
        self.offers: dict[IPv4Address, None] = {}  # outstanding offers, oldest first

    def in_pool(self, ip: IPv4Address) -> bool:
        return 0 <= int(ip) - self.start < self.size and ip not in self.reserved

    def lease_of(self, mac: str) -> Lease | None:
        ip = self.by_mac.get(mac)
        return self.by_ip.get(ip) if ip is not None else None

    def bound_count(self, now: float) -> int:
        return sum(1 for lease in self.by_ip.values() if lease.bound and lease.expires > now)

    def _free_for(self, ip: IPv4Address, mac: str, now: float, in_use: InUse) -> bool:
        if not self.in_pool(ip) or in_use(ip, mac):
            return False
        lease = self.by_ip.get(ip)
        return lease is None or lease.mac == mac or lease.expires <= now

    def offer(self, mac: str, requested: IPv4Address | None, now: float, in_use: InUse = _never) -> IPv4Address | None:
        """Reserve an address for a DISCOVER: the client's own (bound or offered) if it has
        one, else the one it asks for if free, else a free one; None when the pool is full."""
        own = self.lease_of(mac)
        if own is not None and self._free_for(own.ip, mac, now, in_use):
            if not own.bound or own.expires <= now:
                self._reserve(own.ip, mac, now)
            return own.ip
        if requested is not None and self._free_for(requested, mac, now, in_use):
            self._reserve(requested, mac, now)
            return requested
        ip = self._find_free(mac, now, in_use)
        if ip is not None:
            self._reserve(ip, mac, now)
        return ip

    def _find_free(self, mac: str, now: float, in_use: InUse) -> IPv4Address | None:
        """Never used addresses first (from a place that depends on the MAC, so that a host
        tends to get the same address), then the one expired longest ago."""
        first = zlib.crc32(mac.encode()) % self.size
        oldest: Lease | None = None
        for step in range(self.size):
            ip = IPv4Address(self.start + (first + step) % self.size)
            if ip in self.reserved or in_use(ip, mac):
                continue
            lease = self.by_ip.get(ip)
            if lease is None:
                return ip
            if lease.expires <= now and (oldest is None or lease.expires < oldest.expires):
                oldest = lease
        return oldest.ip if oldest is not None else None

    def _reserve(self, ip: IPv4Address, mac: str, now: float) -> None:
        self._drop_offers(now)
        if ip not in self.offers and len(self.offers) >= MAX_OFFERS:
            self._forget(next(iter(self.offers)))
        self._take(ip, mac, now + OFFER_HOLD_S, bound=False)
        self.offers[ip] = None

    def _drop_offers(self, now: float) -> None:
        for ip in [ip for ip in self.offers if self.by_ip[ip].expires <= now]:
            self._forget(ip)

    def _forget(self, ip: IPv4Address) -> None:
        """An offer that lapsed: the address goes back, and its client's old lease with it."""
        self.offers.pop(ip, None)
        lease = self.by_ip.pop(ip, None)
        if lease is not None and self.by_mac.get(lease.mac) == ip:
            del self.by_mac[lease.mac]

    def _take(self, ip: IPv4Address, mac: str, expires: float, bound: bool) -> None:
        previous = self.by_ip.get(ip)
        if previous is not None and self.by_mac.get(previous.mac) == ip and previous.mac != mac:
            del self.by_mac[previous.mac]
        old_ip = self.by_mac.get(mac)
        if old_ip is not None and old_ip != ip:  # one address per client
            self.offers.pop(old_ip, None)
            self.by_ip.pop(old_ip, None)
        self.by_ip[ip] = Lease(ip, mac, expires, bound)
        if mac:
            self.by_mac[mac] = ip

    def request(self, mac: str, ip: IPv4Address, now: float,
                in_use: InUse = _never) -> tuple[Lease | None, list[LeaseChange]]:
        """Bind or renew `ip` for `mac` (REQUEST): the lease, or None for a NAK (not ours to
        give: outside the pool, held or offered to another client, used by another host)."""
        if not self._free_for(ip, mac, now, in_use):
            return None, []
        previous = self.by_ip.get(ip)
        was_bound_here = previous is not None and previous.bound and previous.mac == mac
        old_ip = self.by_mac.get(mac)
        changes = []
        if old_ip is not None and old_ip != ip and (old := self.by_ip.get(old_ip)) is not None and old.bound:
            changes.append(LeaseChange(self.homenet, str(old_ip), None))
        self.offers.pop(ip, None)
        self._take(ip, mac, now + self.lease_s, bound=True)
        if not was_bound_here:
            changes.append(LeaseChange(self.homenet, str(ip), mac))
        return self.by_ip[ip], changes

    def release(self, mac: str, ip: IPv4Address) -> list[LeaseChange]:
        lease = self.by_ip.get(ip)
        if lease is None or lease.mac != mac:
            return []
        self.offers.pop(ip, None)
        del self.by_ip[ip]
        self.by_mac.pop(mac, None)
        return [LeaseChange(self.homenet, str(ip), None)] if lease.bound else []

    def decline(self, mac: str, ip: IPv4Address, now: float) -> list[LeaseChange]:
        """The client found its address in use by another host: keep it out of the pool."""
        lease = self.by_ip.get(ip)
        if lease is None or lease.mac != mac:
            return []
        self.offers.pop(ip, None)
        self.by_mac.pop(mac, None)
        self.by_ip[ip] = Lease(ip, "", now + DECLINE_HOLD_S, bound=False)
        return [LeaseChange(self.homenet, str(ip), None)] if lease.bound else []

    def restore(self, ip: IPv4Address, mac: str, now: float) -> None:
        """A binding read from the store at start: valid for a full lease time from now."""
        if self.in_pool(ip) and mac not in self.by_mac:
            self._take(ip, mac, now + self.lease_s, bound=True)
