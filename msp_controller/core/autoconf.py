"""Host autoconfiguration for every homenet: DHCPv4 answers from its lease book, router
advertisements (solicited, and unsolicited on a spread schedule). Pure; the clock is passed in.

Unsolicited advertisements: each homenet whose MSPMB is programmed has one entry in a heap
of due times, drawn at random in [interval/3, interval] after its last one (RFC 4861's
MinRtrAdvInterval..MaxRtrAdvInterval), the first within INITIAL_SPREAD_S of its MSPMB
connecting. A tick pops only what is due: with 10,000 homenets and the default 600 s
interval, about 25 advertisements a second, never one loop over every homenet.
"""
from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from msp_controller.core.leases import InUse, LeaseBook, LeaseChange
from msp_controller.dataplane import dhcp, ra
from msp_controller.model.autoconf import Autoconf
from msp_controller.model.config import Homenet

INITIAL_SPREAD_S = 16.0  # RFC 4861's MAX_INITIAL_RTR_ADVERT_INTERVAL
MIN_DELAY_BETWEEN_RAS_S = 3.0  # per LAN port: a host soliciting in a loop gets one RA per 3 s
MAX_RA_PORTS = 4096  # solicited-RA rate records kept (oldest forgotten first)


@dataclass
class AutoconfAnswer:
    """What one frame from a LAN port asks the gateway to do."""

    replies: list[bytes] = field(default_factory=list)  # frames out of the port it came in on
    changes: list[LeaseChange] = field(default_factory=list)  # bindings to store
    ignored: str | None = None
    note: str | None = None  # something an operator should know (a lease, a NAK, a full pool)


def enabled(homenet: Homenet) -> Autoconf | None:
    settings = homenet.autoconf
    return settings if settings is not None and settings.enabled else None


def advertisement(homenet: Homenet) -> ra.Advertisement | None:
    settings = enabled(homenet)
    if settings is None or homenet.lan_ipv6 is None:
        return None
    return ra.Advertisement(mac=homenet.gateway_mac,
                            prefix=homenet.lan_ipv6.network if settings.slaac else None,  # type: ignore[arg-type]
                            mtu=settings.mtu, dns=settings.dns6,
                            router_lifetime_s=min(3 * settings.ra_interval_s, 9000))


class HostAutoconf:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.books: dict[str, LeaseBook] = {}
        self.rng = rng or random.Random()
        self._due: list[tuple[float, str]] = []  # (when, homenet): heap of unsolicited RAs
        self._next: dict[str, float] = {}  # each homenet's current due time (older heap entries are stale)
        self._solicited: dict[tuple[str, int], float] = {}  # (homenet, port) -> last solicited RA

    # --- homenets ---------------------------------------------------------------------------

    def add_homenet(self, homenet: Homenet) -> None:
        """Serve (or re-serve, after a change) a homenet; leases inside its new pool stay."""
        settings = enabled(homenet)
        old = self.books.pop(homenet.name, None)
        if settings is None:
            self.stop_adverts(homenet.name)
            return
        book = LeaseBook(homenet.name, settings.pool_start, settings.pool_end, settings.lease_s,
                         reserved=(homenet.lan_ipv4.ip,))
        if old is not None:
            for lease in old.by_ip.values():
                if lease.bound and book.in_pool(lease.ip):
                    book.by_ip[lease.ip] = lease
                    book.by_mac[lease.mac] = lease.ip
        self.books[homenet.name] = book

    def remove_homenet(self, name: str) -> None:
        self.books.pop(name, None)
        self.stop_adverts(name)

    def restore(self, leases: Iterable[tuple[str, str, str]], now: float) -> None:
        """Bindings from the store: (homenet, address, MAC)."""
        for name, ip, mac in leases:
            book = self.books.get(name)
            if book is not None:
                try:
                    book.restore(ipaddress.IPv4Address(ip), mac, now)
                except ValueError:
                    continue

    # --- frames from a LAN port -------------------------------------------------------------

    def handle(self, homenet: Homenet, port: int, data: bytes, now: float, in_use: InUse) -> AutoconfAnswer | None:
        """DHCP from a client or a router solicitation: the answer; None for any other frame."""
        if dhcp.is_dhcp_request(data):
            book = self.books.get(homenet.name)
            if book is None:
                return AutoconfAnswer(ignored="DHCP is off for this homenet")
            return self._dhcp(homenet, book, dhcp.parse_request(data), now, in_use)
        if ra.is_router_solicitation(data):
            return self._solicitation(homenet, port, ra.parse_solicitation(data), now)
        return None

    def _dhcp(self, homenet: Homenet, book: LeaseBook, message: dhcp.DhcpMessage | dhcp.DhcpIgnored,
              now: float, in_use: InUse) -> AutoconfAnswer:
        if isinstance(message, dhcp.DhcpIgnored):
            return AutoconfAnswer(ignored=f"DHCP: {message.reason}")
        settings = homenet.autoconf
        assert settings is not None
        server = dhcp.ServerIdentity(homenet.gateway_mac, homenet.lan_ipv4.ip, homenet.lan_ipv4.network)
        config = dhcp.HostConfig(settings.lease_s, settings.mtu, (homenet.lan_ipv4.ip,), settings.dns4)
        mac = message.chaddr
        if message.kind == dhcp.DISCOVER:
            ip = book.offer(mac, message.requested, now, in_use)
            if ip is None:
                return AutoconfAnswer(note=f"DHCP pool full: no offer for {mac}")
            return AutoconfAnswer([dhcp.build_reply(server, message, dhcp.OFFER, ip, config)])
        if message.kind == dhcp.REQUEST:
            if message.server_id is not None and message.server_id != server.address:
                lease = book.lease_of(mac)
                if lease is not None and not lease.bound:
                    book.release(mac, lease.ip)  # it chose another server: our offer lapses now
                return AutoconfAnswer()
            wanted = message.requested or (message.ciaddr if message.ciaddr != dhcp.ZERO else None)
            if wanted is None:
                return AutoconfAnswer(ignored="DHCP: REQUEST names no address")
            lease, changes = book.request(mac, wanted, now, in_use)
            if lease is None:
                return AutoconfAnswer([dhcp.build_reply(server, message, dhcp.NAK, None, None,
                                                        f"{wanted} is not yours")],
                                      note=f"DHCP NAK: {mac} asked for {wanted}")
            note = f"DHCP lease: {wanted} to {mac}" if changes else None
            return AutoconfAnswer([dhcp.build_reply(server, message, dhcp.ACK, wanted, config)], changes, note=note)
        if message.kind == dhcp.RELEASE:
            return AutoconfAnswer(changes=book.release(mac, message.ciaddr))
        if message.kind == dhcp.DECLINE and message.requested is not None:
            return AutoconfAnswer(changes=book.decline(mac, message.requested, now),
                                  note=f"DHCP: {mac} declined {message.requested} (in use by another host)")
        return AutoconfAnswer(ignored=f"DHCP message type {message.kind} is not served")

    def _solicitation(self, homenet: Homenet, port: int, message: ra.RouterSolicitation | ra.RsIgnored,
                      now: float) -> AutoconfAnswer:
        if isinstance(message, ra.RsIgnored):
            return AutoconfAnswer(ignored=f"router solicitation: {message.reason}")
        ad = advertisement(homenet)
        if ad is None:
            return AutoconfAnswer(ignored="router advertisements are off for this homenet")
        key = (homenet.name, port)
        last = self._solicited.pop(key, None)
        if last is not None and now - last < MIN_DELAY_BETWEEN_RAS_S:
            self._solicited[key] = last
            return AutoconfAnswer()
        while len(self._solicited) >= MAX_RA_PORTS:
            del self._solicited[next(iter(self._solicited))]
        self._solicited[key] = now
        # To all nodes, out of the soliciting host's port only (RFC 4861 6.2.6 allows either).
        return AutoconfAnswer([ra.build_advertisement(ad)])

    # --- unsolicited advertisements ---------------------------------------------------------

    def start_adverts(self, homenet: Homenet, now: float) -> None:
        """The homenet's MSPMB is programmed: its first advertisement within INITIAL_SPREAD_S."""
        if advertisement(homenet) is not None:
            self._schedule(homenet.name, now + self.rng.uniform(0.0, INITIAL_SPREAD_S))

    def stop_adverts(self, name: str) -> None:
        self._next.pop(name, None)  # its heap entry is skipped when it comes up

    def _schedule(self, name: str, when: float) -> None:
        self._next[name] = when
        heapq.heappush(self._due, (when, name))

    def due_adverts(self, now: float) -> list[str]:
        """The homenets whose unsolicited advertisement is due now (the caller reschedules each)."""
        due = []
        while self._due and self._due[0][0] <= now:
            when, name = heapq.heappop(self._due)
            if self._next.get(name) != when:
                continue
            due.append(name)
        return due

    def adverts(self, now: float, homenet_of: Callable[[str], Homenet | None],
                lan_ports: Callable[[Homenet], list[int] | None]) -> list[tuple[int, int, bytes]]:
        """(MSPMB dpid, LAN port, frame) for the unsolicited advertisements due now. Each
        homenet is rescheduled, but one whose MSPMB is not programmed now (lan_ports None) is
        dropped from the schedule until start_adverts re-arms it."""
        sends = []
        for name in self.due_adverts(now):
            homenet = homenet_of(name)
            ad = advertisement(homenet) if homenet is not None else None
            ports = lan_ports(homenet) if homenet is not None and ad is not None else None
            if homenet is None or ad is None or ports is None:
                self._next.pop(name, None)
                continue
            frame = ra.build_advertisement(ad)
            sends += [(homenet.dpid, port, frame) for port in ports]
            self.reschedule(homenet, now)
        return sends

    def reschedule(self, homenet: Homenet, now: float) -> None:
        settings = enabled(homenet)
        if settings is None:
            self.stop_adverts(homenet.name)
            return
        interval = settings.ra_interval_s
        self._schedule(homenet.name, now + self.rng.uniform(interval / 3, interval))
