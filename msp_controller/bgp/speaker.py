"""Announce the homenets' provider-independent prefixes to the upstream BGP routers.

`BgpAnnouncer` drives Ryu 4.34's `BGPSpeaker` so that each neighbor receives exactly the
prefixes the controller wants announced there, each with its own NEXT_HOP (the Internet-facing
address of the MSP edge beside that neighbor) and its own count of AS-path prepends.

Ryu 4.34 cannot do that by itself: `prefix_add(prefix, next_hop)` is global to all neighbors,
`neighbor_add(next_hop=...)` is per neighbor but IPv4-only and not per prefix, and there is no
prepending. Left alone, it announces an IPv6 prefix over an IPv4 session with an IPv4-mapped
next hop, which BIRD ignores. Its per-neighbor out filters are no help either: `PrefixFilter`
claims the IPv4 unicast family for every prefix, so peers skip it for IPv6 paths, and when a
filter starts denying a prefix that was already sent, the withdrawal it queues is blocked by
that same filter and never leaves (seen against BIRD: the route stays).

So this module owns one table, `RouteTable` (neighbor address -> prefix -> `Route`), and one
hook around `Peer._construct_update` (see `install_update_hook`) that makes every UPDATE Ryu
builds for a neighbor in the table match the table:
  * a prefix with a `Route` there goes out with that route's next hop and prepends;
  * any other prefix goes out as a withdrawal, so a neighbor never hears a prefix it should not
    (nor, should an upstream ever send us routes, would we re-advertise them: we are no transit).
Neighbors absent from the table are left alone.

`apply()` then only has to (1) update the table, (2) `prefix_add`/`prefix_del` prefixes that
enter or leave the set announced anywhere (Ryu then sends them to every neighbor, through the
hook), and (3) re-send a prefix to just the neighbors whose treatment of it changed. A side
effect: a neighbor that is not to have a prefix receives its withdrawal whenever Ryu sends the
prefix to all (when it is first announced anywhere, when the session comes up); BGP allows
withdrawing what was never announced, and BIRD ignores it.

Who connects: the speaker does not listen (``listen_port=0``) and connects out to every
neighbor on TCP 179 (Ryu's ``connect_mode='active'``); the upstream BIRD runs its session with
``passive on``. Ryu's own connect loop waits 1 s before an attempt and 30 s after one (its
``bgp_conn_retry_time``, which it refuses below 10 s), so a session that dropped came back up to
31 s later; `BgpAnnouncer` runs its own loop instead (see "reconnecting" below): the first
attempt CONNECT_DELAY_S after a session is lost, then one every ``connect_retry_s`` (default
1 s) until the neighbour accepts. With ``listen_port=179`` the speaker also accepts connections
(``connect_mode='both'``).

Ryu's BGP core is a process-wide singleton: run one `BgpAnnouncer` per process, and call every
method from an eventlet green thread (inside a Ryu app: the app's own threads).
"""
from __future__ import annotations

import copy
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ryu.lib import hub
from ryu.lib.packet.afi import IP, IP6
from ryu.lib.packet.bgp import (
    BGP_ATTR_TYPE_AS4_PATH,
    BGP_ATTR_TYPE_AS_PATH,
    BGP_ATTR_TYPE_MP_REACH_NLRI,
    BGP_ATTR_TYPE_NEXT_HOP,
    BGPOptParamCapabilityGracefulRestart,
    BGPPathAttributeMpReachNLRI,
    BGPPathAttributeMpUnreachNLRI,
    BGPPathAttributeNextHop,
    BGPUpdate,
)
from ryu.lib.packet.safi import UNICAST
from ryu.services.protocols.bgp.bgpspeaker import BGPSpeaker
from ryu.services.protocols.bgp.constants import BGP_FSM_ACTIVE, BGP_FSM_CONNECT, BGP_FSM_IDLE
from ryu.services.protocols.bgp.core_manager import CORE_MANAGER
from ryu.services.protocols.bgp.peer import Peer
from ryu.services.protocols.bgp.rtconf.neighbors import (
    CONNECT_MODE_ACTIVE,
    CONNECT_MODE_BOTH,
)

LOG = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Far beyond any useful prepending, and keeps the AS_PATH well inside one 255-AS segment.
MAX_PREPEND = 32
ESTABLISHED = "established"
DOWN = "down"


@dataclass(frozen=True)
class Neighbor:
    address: str
    asn: int


@dataclass(frozen=True)
class Route:
    next_hop: str
    prepend: int = 0


# neighbor address -> prefix ("198.51.100.0/24", "2001:db8:100::/48") -> how to announce it
# there; a prefix absent for a neighbor is withdrawn there.
Desired = Mapping[str, Mapping[str, Route]]

# What the hook reads: neighbor address -> prefix -> route. Same meaning as `Desired`.
RouteTable = dict[str, dict[Network, Route]]


@dataclass(frozen=True)
class Change:
    """One (neighbor, prefix) whose announcement differs between two `Desired` states."""

    neighbor: str
    prefix: str
    before: Route | None
    after: Route | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "announce"
        if self.after is None:
            return "withdraw"
        return "modify"


def diff_announcements(old: Desired, new: Desired) -> list[Change]:
    """Every (neighbor, prefix) announced differently in `new` than in `old`, sorted."""
    changes = []
    for neighbor in sorted(set(old) | set(new)):
        before_routes = old.get(neighbor, {})
        after_routes = new.get(neighbor, {})
        for prefix in sorted(set(before_routes) | set(after_routes)):
            before = before_routes.get(prefix)
            after = after_routes.get(prefix)
            if before != after:
                changes.append(Change(neighbor, prefix, before, after))
    return changes


def announced_anywhere(desired: Desired) -> set[str]:
    """The prefixes announced to at least one neighbor."""
    return {prefix for routes in desired.values() for prefix in routes}


# --- validation -----------------------------------------------------------------------------

def canonical_address(address: str) -> str:
    return str(ipaddress.ip_address(address))


def canonical_prefix(prefix: str) -> str:
    network = ipaddress.ip_network(prefix)  # strict: host bits set is a caller's mistake
    if network.prefixlen == 0:
        raise ValueError(f"refusing to announce a default route: {prefix}")
    return str(network)


def validated_route(prefix: str, route: Route) -> Route:
    next_hop = ipaddress.ip_address(route.next_hop)
    if next_hop.version != ipaddress.ip_network(prefix).version:
        raise ValueError(f"next hop {route.next_hop} is not of the family of {prefix}")
    if not 0 <= route.prepend <= MAX_PREPEND:
        raise ValueError(f"prepend for {prefix} must be 0..{MAX_PREPEND}, not {route.prepend}")
    return Route(str(next_hop), route.prepend)


def normalized_desired(desired: Desired, neighbors: Sequence[str]) -> dict[str, dict[str, Route]]:
    """`desired` with canonical addresses and prefixes, an entry for every neighbor."""
    result: dict[str, dict[str, Route]] = {address: {} for address in neighbors}
    for address, routes in desired.items():
        neighbor = canonical_address(address)
        if neighbor not in result:
            raise ValueError(f"{address} is not a configured BGP neighbor")
        for prefix, route in routes.items():
            canonical = canonical_prefix(prefix)
            result[neighbor][canonical] = validated_route(canonical, route)
    return result


def route_table(desired: Desired) -> RouteTable:
    return {
        neighbor: {ipaddress.ip_network(prefix): route for prefix, route in routes.items()}
        for neighbor, routes in desired.items()
    }


# --- the UPDATE rewrite (pure) ----------------------------------------------------------------

def rewrite_update(update: BGPUpdate, peer_address: str, table: RouteTable) -> BGPUpdate:
    """`update`, as Ryu built it for `peer_address`, made to match `table`.

    For a peer in `table`, an announcement of a prefix with a route there gets that route's
    next hop and prepends; an announcement of any other prefix becomes its withdrawal.
    Withdrawals, End-of-RIB markers and peers absent from `table` pass unchanged.
    """
    routes = table.get(peer_address)
    if routes is None:
        return update
    announced = _announced_nlri(update)
    if not announced:
        return update
    if len(announced) > 1:
        # Ryu 4.34 builds one UPDATE per prefix; should that change, withdraw rather than guess.
        LOG.error("BGP hook: UPDATE to %s announces %d prefixes; withdrawing them",
                  peer_address, len(announced))
        return _withdrawal(update, announced)
    route = routes.get(ipaddress.ip_network(announced[0].prefix))
    if route is None:
        return _withdrawal(update, announced)
    return _with_route(update, route)


def _announced_nlri(update: BGPUpdate) -> list:
    mp_reach = update.get_path_attr(BGP_ATTR_TYPE_MP_REACH_NLRI)
    if mp_reach is not None:
        return list(mp_reach.nlri)
    return list(update.nlri or [])


def _withdrawal(update: BGPUpdate, nlri: list) -> BGPUpdate:
    mp_reach = update.get_path_attr(BGP_ATTR_TYPE_MP_REACH_NLRI)
    if mp_reach is None:
        return BGPUpdate(withdrawn_routes=nlri)
    unreach = BGPPathAttributeMpUnreachNLRI(mp_reach.afi, mp_reach.safi, nlri)
    return BGPUpdate(path_attributes=[unreach])


def _with_route(update: BGPUpdate, route: Route) -> BGPUpdate:
    attributes = [_rewritten_attribute(attribute, route) for attribute in update.path_attributes]
    return BGPUpdate(withdrawn_routes=update.withdrawn_routes, path_attributes=attributes,
                     nlri=update.nlri)


def _rewritten_attribute(attribute, route: Route):
    if attribute.type == BGP_ATTR_TYPE_NEXT_HOP:
        return BGPPathAttributeNextHop(route.next_hop)
    if attribute.type == BGP_ATTR_TYPE_MP_REACH_NLRI:
        return BGPPathAttributeMpReachNLRI(attribute.afi, attribute.safi, route.next_hop,
                                           attribute.nlri)
    if attribute.type in (BGP_ATTR_TYPE_AS_PATH, BGP_ATTR_TYPE_AS4_PATH):
        return _prepended(attribute, route.prepend)
    return attribute


def _prepended(as_path, times: int):
    """`as_path` with its leftmost AS repeated `times` more times.

    On an eBGP session the leftmost AS is the one Ryu just put there: ours (or AS_TRANS in
    a two-octet AS_PATH, whose AS4_PATH then carries ours and is prepended alike).
    """
    segments = as_path.path_seg_list  # a deep copy
    if times == 0 or not segments or not isinstance(segments[0], list) or not segments[0]:
        return as_path
    leftmost = segments[0][0]
    if len(segments[0]) + times <= 255:
        segments[0][:0] = [leftmost] * times
    else:
        segments.insert(0, [leftmost] * times)
    rewritten = copy.copy(as_path)
    rewritten.value = segments
    return rewritten


# --- the hook on Ryu's Peer ------------------------------------------------------------------

_ORIGINAL_CONSTRUCT_UPDATE = Peer._construct_update
_hooked_table: RouteTable | None = None


def install_update_hook(table: RouteTable) -> None:
    """Make every UPDATE Ryu sends follow `table` (see `rewrite_update`).

    `Peer._construct_update(outgoing_route)` is where Ryu 4.34 turns a path into the UPDATE
    for one peer, with the peer at hand; it is called for every announcement and withdrawal
    (initial table, route changes, route refresh, out-filter changes) and nowhere else.
    Ryu is pinned to 4.34, so wrapping this private method is stable; the golden tests in
    tests/unit/test_bgp_speaker.py pin its output. The table is read at send time, so an
    UPDATE still queued when the table changes goes out with the newest state.
    """
    global _hooked_table
    _hooked_table = table
    Peer._construct_update = _construct_update_from_table


def remove_update_hook() -> None:
    global _hooked_table
    _hooked_table = None
    Peer._construct_update = _ORIGINAL_CONSTRUCT_UPDATE


def _construct_update_from_table(peer: Peer, outgoing_route) -> BGPUpdate:
    update = _ORIGINAL_CONSTRUCT_UPDATE(peer, outgoing_route)
    if _hooked_table is None:
        return update
    try:
        return rewrite_update(update, peer.ip_address, _hooked_table)
    except Exception:
        # An exception here would end the peer's sending thread for good, silently. Withdraw
        # instead: a missing route is safer than one with another edge's next hop.
        LOG.exception("BGP hook failed for %s; withdrawing the prefix there", peer.ip_address)
        return rewrite_update(update, peer.ip_address, {peer.ip_address: {}})


def _resend_to_neighbors(pairs: Sequence[tuple[str, str]]) -> None:
    """Send each (neighbor address, prefix) again to that neighbor only, through the hook.

    Ryu has no public call for this; `Peer.communicate_path` is what Ryu itself uses to send
    a best path to one peer, and it skips a peer whose session is not up (that peer gets
    everything when its session comes up). A prefix without a best path yet is still being
    processed and reaches every neighbor, through the hook, anyway.
    """
    core = CORE_MANAGER.get_core_service()
    best_paths = _best_local_paths(core.table_manager)
    for address, prefix in pairs:
        peer = core.peer_manager.get_by_addr(address)
        path = best_paths.get(ipaddress.ip_network(prefix))
        if peer is not None and path is not None:
            peer.communicate_path(path)


def _best_local_paths(table_manager) -> dict[Network, object]:
    # One pass over Ryu's global tables, so a failover of many prefixes stays linear.
    best_paths: dict[Network, object] = {}
    for table in (table_manager.get_ipv4_table(), table_manager.get_ipv6_table()):
        for destination in table.values():
            if destination.best_path is not None:
                best_paths[ipaddress.ip_network(destination.nlri.prefix)] = destination.best_path
    return best_paths


# --- graceful restart -------------------------------------------------------------------------
# The data plane (OVS, fail mode secure) keeps forwarding while the controller restarts, so
# the routes it announced stay right. Ryu 4.34 cannot say so; this OPEN hook adds the
# graceful restart capability (RFC 4724) with "forwarding preserved" for IPv4 and IPv6
# unicast, and the announcer sends End-of-RIB once a session's routes are out. A neighbor
# then keeps our routes as stale for GRACEFUL_RESTART_S when the session drops without a
# NOTIFICATION (a crash or restart) and refreshes them when we are back.

GRACEFUL_RESTART_S = 120
FORWARDING_PRESERVED = 0x80
END_OF_RIB_DELAY_S = 1.0  # after the session comes up: Ryu sends its table first
END_OF_RIB_MAX_WAIT_S = 30.0  # for the first announcement after a (re)start
WITHDRAW_FLUSH_S = 0.5  # shutdown(withdraw=True) gives the withdrawals this long to leave

_ORIGINAL_CREATE_OPEN = Peer.create_open_msg


def graceful_restart_capability() -> BGPOptParamCapabilityGracefulRestart:
    return BGPOptParamCapabilityGracefulRestart(
        flags=0, time=GRACEFUL_RESTART_S,
        tuples=[(IP, UNICAST, FORWARDING_PRESERVED), (IP6, UNICAST, FORWARDING_PRESERVED)])


_ORIGINAL_CONNECT_TCP = Peer._connect_tcp


def bind_sessions_to(source_address: str | None) -> None:
    """Open every BGP session from `source_address` (None: the kernel's choice).

    Ryu binds a session only when a neighbour has both a local address and a local port,
    and a fixed port would clash between neighbours. Bound to the configured address (any
    port), a session can only leave from it: once the management link and its address are
    gone, connect() fails instead of following whatever route is left (a default route off
    the machine, say)."""
    if source_address is None:
        Peer._connect_tcp = _ORIGINAL_CONNECT_TCP
        return

    def connect_from_source(peer: Peer, peer_addr, conn_handler, time_out=None,  # type: ignore[no-untyped-def]
                            bind_address=None, password=None):
        return _ORIGINAL_CONNECT_TCP(peer, peer_addr, conn_handler, time_out=time_out,
                                     bind_address=bind_address or (source_address, 0), password=password)

    Peer._connect_tcp = connect_from_source


def _create_open_with_graceful_restart(peer: Peer):  # type: ignore[no-untyped-def]
    open_msg = _ORIGINAL_CREATE_OPEN(peer)
    open_msg.opt_param.append(graceful_restart_capability())
    return open_msg


def send_end_of_rib(peer: Peer) -> None:
    """End-of-RIB for IPv4 unicast (an empty UPDATE) and IPv6 unicast (empty MP_UNREACH)."""
    peer.enque_outgoing_msg(BGPUpdate())
    peer.enque_outgoing_msg(BGPUpdate(path_attributes=[BGPPathAttributeMpUnreachNLRI(IP6, UNICAST, [])]))


# --- reconnecting -----------------------------------------------------------------------------
# Ryu 4.34's `Peer._connect_loop` sleeps 1 s before each attempt and `bgp_conn_retry_time` after
# it (30 s; its config refuses less than 10) whether the attempt worked or not, so a session lost
# soon after it came up is tried again up to 31 s later, and meanwhile that upstream hears
# nothing of us. `connect_promptly` replaces it while an announcer runs, with the same contract
# towards the rest of Ryu's Peer: Ryu sets the peer's connect-retry event while it wants a
# session and has none (enabled, session lost) and clears it once a session is bound; an attempt
# is made only from the Idle or Active state; a failed one leaves the peer Active.

CONNECT_RETRY_S = 1.0  # between attempts while the neighbour does not answer
CONNECT_DELAY_S = 0.2  # after a loss, before the first attempt: the old connection closes first

_ORIGINAL_CONNECT_LOOP = Peer._connect_loop
_connect_retry: dict[str, float] = {}  # neighbour address -> seconds between attempts


def connect_retry_s(peer: Peer) -> float:
    """Seconds between connection attempts to this peer (the announcer's setting)."""
    return _connect_retry.get(peer.ip_address, CONNECT_RETRY_S)


def connect_promptly(peer: Peer, client_factory: Callable[..., object]) -> None:
    """The peer's connect loop (a green thread per active neighbour; Ryu kills it on stop)."""
    wanted = peer._connect_retry_event
    if peer._neigh_conf.enabled:
        wanted.set()
    while True:
        wanted.wait()
        retry_s = connect_retry_s(peer)
        delay_s = min(CONNECT_DELAY_S, retry_s)
        peer.pause(delay_s)
        if peer.state.bgp_state in (BGP_FSM_IDLE, BGP_FSM_ACTIVE):
            _connect_once(peer, client_factory, retry_s)
        peer.pause(retry_s - delay_s)


def _connect_once(peer: Peer, client_factory: Callable[..., object], retry_s: float) -> None:
    conf = peer._neigh_conf
    peer.state.bgp_state = BGP_FSM_CONNECT
    bind = (conf.host_bind_ip, conf.host_bind_port) if conf.host_bind_ip and conf.host_bind_port else None
    try:
        # Through Peer._connect_tcp, so bind_sessions_to() applies.
        peer._connect_tcp((conf.ip_address, conf.port), client_factory,
                          time_out=peer._common_conf.tcp_conn_timeout, bind_address=bind, password=conf.password)
    except OSError as err:  # refused, unreachable, or Ryu's connect timeout
        peer.state.bgp_state = BGP_FSM_ACTIVE
        LOG.debug("BGP: cannot connect to %s (%s); again in %.1f s", conf.ip_address, err, retry_s)


def install_connect_loop(retry_s: Mapping[str, float]) -> None:
    """Peers started from now on connect by `connect_promptly`, each neighbour address
    retrying after its seconds in `retry_s` (others: CONNECT_RETRY_S)."""
    _connect_retry.clear()
    _connect_retry.update(retry_s)
    Peer._connect_loop = connect_promptly


def remove_connect_loop() -> None:
    _connect_retry.clear()
    Peer._connect_loop = _ORIGINAL_CONNECT_LOOP


# --- the announcer ---------------------------------------------------------------------------

class BgpAnnouncer:
    """Keeps the announcements to every BGP neighbor equal to the last `apply()`."""

    def __init__(self, asn: int, router_id: str, neighbors: Sequence[Neighbor],
                 listen_port: int = 0,
                 on_session_change: Callable[[str, str], None] | None = None,
                 source_address: str | None = None, connect_retry_s: float = CONNECT_RETRY_S) -> None:
        if not 0 < connect_retry_s <= 60:
            raise ValueError(f"connect_retry_s must be in (0, 60] seconds, not {connect_retry_s}")
        self._connect_retry_s = float(connect_retry_s)
        self._asn = asn
        self._source_address = str(ipaddress.ip_address(source_address)) if source_address else None
        self._router_id = str(ipaddress.IPv4Address(router_id))
        self._neighbors = {canonical_address(n.address): n.asn for n in neighbors}
        if len(self._neighbors) != len(neighbors):
            raise ValueError("BGP neighbor addresses must be unique")
        self._listen_port = listen_port
        self._on_session_change = on_session_change
        self._speaker: BGPSpeaker | None = None
        self._announced = normalized_desired({}, list(self._neighbors))
        self._table: RouteTable = route_table(self._announced)
        self._established: set[str] = set()
        self._applied = False  # has apply() announced anything since start()?

    def start(self) -> None:
        """Start Ryu's speaker and its sessions; call from a green thread."""
        if self._speaker is not None:
            raise RuntimeError("BgpAnnouncer already started")
        install_update_hook(self._table)
        Peer.create_open_msg = _create_open_with_graceful_restart
        bind_sessions_to(self._source_address)
        install_connect_loop({address: self._connect_retry_s for address in self._neighbors})
        self._speaker = BGPSpeaker(
            as_number=self._asn, router_id=self._router_id,
            bgp_server_port=self._listen_port,  # 0: Ryu opens no listening socket at all
            peer_up_handler=self._on_peer_event, peer_down_handler=self._on_peer_event)
        for address, asn in self._neighbors.items():
            self._speaker.neighbor_add(
                address, asn, enable_ipv4=True, enable_ipv6=True,
                enable_four_octet_as_number=True, connect_mode=self._connect_mode())

    def apply(self, desired: Desired) -> None:
        """Announce `desired`; only the (neighbor, prefix) pairs that changed are sent."""
        speaker = self._running_speaker()
        new = normalized_desired(desired, list(self._neighbors))
        changes = diff_announcements(self._announced, new)
        if not changes:
            return
        before, after = announced_anywhere(self._announced), announced_anywhere(new)
        # The table first: everything below, and anything already queued, is built from it.
        self._replace_table(route_table(new))
        self._announced = new
        self._applied = self._applied or bool(after)
        for prefix in sorted(before - after):
            speaker.prefix_del(prefix)
        for prefix in sorted(after - before):
            speaker.prefix_add(prefix)
        _resend_to_neighbors([(change.neighbor, change.prefix) for change in changes
                              if change.prefix in before and change.prefix in after])
        LOG.info("BGP: applied %s", _counts(changes))
        LOG.debug("BGP: changes: %s", _summary(changes))

    def apply_changes(self, changes: Mapping[str, Mapping[str, Route]]) -> None:
        """Announce each listed prefix to exactly the neighbors it maps to ({}: withdraw it
        everywhere); prefixes not listed stay as they are. Costs what the listed prefixes
        cost, whatever else is announced: the controller calls it once per event."""
        speaker = self._running_speaker()
        new_routes: dict[str, dict[str, Route]] = {}
        for prefix, routes in changes.items():
            canonical = canonical_prefix(prefix)
            entry = {}
            for address, route in routes.items():
                neighbor = canonical_address(address)
                if neighbor not in self._neighbors:
                    raise ValueError(f"{address} is not a configured BGP neighbor")
                entry[neighbor] = validated_route(canonical, route)
            new_routes[canonical] = entry
        applied: list[Change] = []
        for prefix, routes in sorted(new_routes.items()):
            network = ipaddress.ip_network(prefix)
            was_announced = any(prefix in self._announced[n] for n in self._neighbors)
            changed = []
            # The table first: the UPDATEs below, and any already queued, are built from it.
            for neighbor in self._neighbors:
                before, after = self._announced[neighbor].get(prefix), routes.get(neighbor)
                if before == after:
                    continue
                changed.append(Change(neighbor, prefix, before, after))
                if after is None:
                    del self._announced[neighbor][prefix]
                    self._table.setdefault(neighbor, {}).pop(network, None)
                else:
                    self._announced[neighbor][prefix] = after
                    self._table.setdefault(neighbor, {})[network] = after
            if not changed:
                continue
            applied += changed
            if was_announced and not routes:
                speaker.prefix_del(prefix)
            elif routes and not was_announced:
                speaker.prefix_add(prefix)
                self._applied = True
            else:
                _resend_to_neighbors([(c.neighbor, c.prefix) for c in changed])
        if applied:
            LOG.info("BGP: applied %s", _counts(applied))
            LOG.debug("BGP: changes: %s", _summary(applied))

    def sessions(self) -> dict[str, str]:
        """Neighbor address -> "established", or Ryu's FSM state ("idle", "connect",
        "active", "opensent", "openconfirm"); "down" for every neighbor before start()."""
        if self._speaker is None:
            return {address: DOWN for address in self._neighbors}
        summary = json.loads(self._speaker.neighbor_state_get())
        return {address: _session_state(summary.get(address)) for address in self._neighbors}

    def announced(self) -> dict[str, dict[str, Route]]:
        return {neighbor: dict(routes) for neighbor, routes in self._announced.items()}

    def shutdown(self, withdraw: bool = True) -> None:
        """Close every session and stop Ryu's BGP core.

        withdraw: first withdraw every route, so the neighbors drop them now. Without it
        the neighbors keep our routes as stale for GRACEFUL_RESTART_S (graceful restart):
        right when the controller is restarting and the switches keep forwarding.
        Ryu reports nothing while stopping; the sessions that were up are reported "down".
        """
        if withdraw and self._speaker is not None and announced_anywhere(self._announced):
            self.apply({})
            hub.sleep(WITHDRAW_FLUSH_S)  # let the peers' send threads put the withdrawals out
        speaker, self._speaker = self._speaker, None  # None first: see _on_peer_event
        if speaker is None:
            return
        speaker.shutdown()
        remove_update_hook()
        Peer.create_open_msg = _ORIGINAL_CREATE_OPEN
        bind_sessions_to(None)
        remove_connect_loop()
        went_down, self._established = self._established, set()
        for address in sorted(went_down):
            self._report_session(address, "down")

    def _connect_mode(self) -> str:
        # Without a listening socket the neighbors cannot connect in: we must connect out.
        return CONNECT_MODE_ACTIVE if self._listen_port == 0 else CONNECT_MODE_BOTH

    def _running_speaker(self) -> BGPSpeaker:
        if self._speaker is None:
            raise RuntimeError("BgpAnnouncer.start() has not been called")
        return self._speaker

    def _replace_table(self, table: RouteTable) -> None:
        # In place: the hook holds this very dict.
        self._table.clear()
        self._table.update(table)

    def _on_peer_event(self, _remote: str, _remote_as: int) -> None:
        # Ryu reports a session going up with the peer's router ID, not its address: ask Ryu
        # for every session's state instead and report what changed.
        if self._speaker is None:
            return  # stopping
        established = {a for a, state in self.sessions().items() if state == ESTABLISHED}
        went_up, went_down = established - self._established, self._established - established
        self._established = established
        for address in sorted(went_up):
            self._report_session(address, "up")
            hub.spawn_after(END_OF_RIB_DELAY_S, self._end_of_rib, address)
        for address in sorted(went_down):
            self._report_session(address, "down")

    def _end_of_rib(self, address: str, waited_s: float = 0.0) -> None:
        if self._speaker is None or address not in self._established:
            return
        if not self._applied and waited_s < END_OF_RIB_MAX_WAIT_S:
            # After a restart the controller first reconciles its edges, then announces:
            # End-of-RIB before that would make the neighbor drop the stale routes.
            hub.spawn_after(END_OF_RIB_DELAY_S, self._end_of_rib, address, waited_s + END_OF_RIB_DELAY_S)
            return
        peer = CORE_MANAGER.get_core_service().peer_manager.get_by_addr(address)
        if peer is not None:
            send_end_of_rib(peer)

    def _report_session(self, address: str, state: str) -> None:
        LOG.info("BGP session with %s %s", address, state)
        if self._on_session_change is None:
            return
        try:
            self._on_session_change(address, state)
        except Exception:
            LOG.exception("on_session_change(%s, %s) failed", address, state)


def _session_state(summary: dict | None) -> str:
    if not summary:
        return DOWN
    state = str(summary.get("info", {}).get("bgp_state", DOWN)).lower()
    return state or DOWN


def _counts(changes: list[Change]) -> str:
    kinds = [change.kind for change in changes]
    return ", ".join(f"{kinds.count(kind)} {kind}" for kind in ("announce", "withdraw", "modify")
                     if kind in kinds)


def _summary(changes: list[Change]) -> str:
    return ", ".join(f"{c.kind} {c.prefix} at {c.neighbor}" for c in changes)
