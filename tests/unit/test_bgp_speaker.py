"""The BGP announcer without a network: the diff, the validation, and the UPDATE hook.

The hook tests run Ryu's own `Peer._construct_update` (on a `Peer` whose configuration is a
stand-in) with the hook installed, and pin the resulting UPDATE bytes (golden).
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from ryu.lib.packet import bgp
from ryu.services.protocols.bgp import constants as bgp_const
from ryu.services.protocols.bgp.info_base.ipv4 import Ipv4Path
from ryu.services.protocols.bgp.info_base.ipv6 import Ipv6Path
from ryu.services.protocols.bgp.model import OutgoingRoute
from ryu.services.protocols.bgp.peer import Peer

from msp_controller.bgp import speaker as bgp_speaker
from msp_controller.bgp.speaker import (
    BgpAnnouncer,
    Change,
    Neighbor,
    Route,
    RouteTable,
    diff_announcements,
    install_update_hook,
    normalized_desired,
    remove_update_hook,
    rewrite_update,
    route_table,
)

V4, V6 = "198.51.100.0/24", "2001:db8:100::/48"
PEER_A, PEER_B, PEER_OTHER = "198.18.250.2", "198.18.250.6", "198.18.250.10"
A4, A6 = Route("198.18.251.2"), Route("2001:db8:fb1::2")
B4, B6 = Route("198.18.252.2", prepend=2), Route("2001:db8:fb2::2", prepend=2)
OUR_AS = 65000


# --- diff_announcements ------------------------------------------------------------------------

def test_diff_of_equal_states_is_empty() -> None:
    state = {PEER_A: {V4: A4, V6: A6}, PEER_B: {}}
    assert diff_announcements(state, state) == []


def test_diff_reports_announce_withdraw_and_modify_sorted() -> None:
    old = {PEER_A: {V4: A4, V6: A6}, PEER_B: {V4: B4}}
    new = {PEER_A: {V4: A4}, PEER_B: {V4: Route("198.18.252.2"), V6: B6}}
    assert diff_announcements(old, new) == [
        Change(PEER_A, V6, A6, None),
        Change(PEER_B, V4, B4, Route("198.18.252.2")),
        Change(PEER_B, V6, None, B6),
    ]
    assert [c.kind for c in diff_announcements(old, new)] == ["withdraw", "modify", "announce"]


def test_diff_treats_a_missing_neighbor_as_announcing_nothing() -> None:
    assert diff_announcements({}, {PEER_A: {V4: A4}}) == [Change(PEER_A, V4, None, A4)]
    assert diff_announcements({PEER_A: {V4: A4}}, {}) == [Change(PEER_A, V4, A4, None)]


# --- validation --------------------------------------------------------------------------------

def test_normalized_desired_canonicalises_and_lists_every_neighbor() -> None:
    desired = {PEER_A: {"2001:DB8:100:0::/48": Route("2001:DB8:FB1:0::2", 1)}}
    assert normalized_desired(desired, [PEER_A, PEER_B]) == {
        PEER_A: {V6: Route("2001:db8:fb1::2", 1)}, PEER_B: {}}


@pytest.mark.parametrize("desired", [
    {PEER_OTHER: {V4: A4}},                       # not a configured neighbor
    {PEER_A: {V4: A6}},                           # IPv6 next hop for an IPv4 prefix
    {PEER_A: {V6: A4}},                           # and the other way round
    {PEER_A: {"198.51.100.1/24": A4}},            # host bits set
    {PEER_A: {"0.0.0.0/0": A4}},                  # a default route
    {PEER_A: {V4: Route("198.18.251.2", -1)}},
    {PEER_A: {V4: Route("198.18.251.2", bgp_speaker.MAX_PREPEND + 1)}},
])
def test_normalized_desired_rejects(desired: dict) -> None:
    with pytest.raises(ValueError):
        normalized_desired(desired, [PEER_A, PEER_B])


# --- the hook on a real Peer (golden) ------------------------------------------------------------

MARKER = "ff" * 16
ORIGIN_IGP = "40010100"


def as_path(*asns: int) -> str:
    """A four-octet AS_PATH attribute with one AS_SEQUENCE segment."""
    segment = "02" + f"{len(asns):02x}" + "".join(f"{asn:08x}" for asn in asns)
    return "4002" + f"{len(segment) // 2:02x}" + segment


def update_v4(next_hop: str, path: str) -> str:
    attributes = "400304" + next_hop + ORIGIN_IGP + path
    body = "0000" + f"{len(attributes) // 2:04x}" + attributes + "18c63364"  # 198.51.100.0/24
    return MARKER + f"{19 + len(body) // 2:04x}" + "02" + body


def update_v6(next_hop: str, path: str) -> str:
    mp_reach = "0002" + "01" + "10" + next_hop + "00" + "30" + "20010db80100"  # 2001:db8:100::/48
    attributes = "800e" + f"{len(mp_reach) // 2:02x}" + mp_reach + ORIGIN_IGP + path
    body = "0000" + f"{len(attributes) // 2:04x}" + attributes
    return MARKER + f"{19 + len(body) // 2:04x}" + "02" + body


GOLDEN = {
    # (peer, prefix): the UPDATE for the table below
    (PEER_A, V4): update_v4("c612fb02", as_path(OUR_AS)),
    (PEER_B, V4): update_v4("c612fc02", as_path(OUR_AS, OUR_AS, OUR_AS)),
    (PEER_A, V6): update_v6("20010db80fb1" + "00" * 9 + "02", as_path(OUR_AS)),
    (PEER_B, V6): update_v6("20010db80fb2" + "00" * 9 + "02", as_path(OUR_AS, OUR_AS, OUR_AS)),
}
TABLE = {PEER_A: {V4: A4, V6: A6}, PEER_B: {V4: B4, V6: B6}}


def stand_in_peer(address: str, local_as: int = OUR_AS, four_octet: bool = True) -> Peer:
    """A Ryu `Peer`, established on an eBGP session, without the BGP core behind it."""
    peer = Peer.__new__(Peer)
    peer._neigh_conf = SimpleNamespace(
        ip_address=address, remote_as=64501, local_as=local_as, next_hop=None,
        is_route_server_client=False, is_route_reflector_client=False,
        is_next_hop_self=False, multi_exit_disc=None, soo_list=[])
    peer._common_conf = SimpleNamespace(local_as=local_as)
    peer._protocol = SimpleNamespace(is_four_octet_as_number_cap_valid=lambda: four_octet)
    peer.state = SimpleNamespace(bgp_state=bgp_const.BGP_FSM_ESTABLISHED)
    peer._host_bind_ip = "198.18.250.1"  # what Ryu would announce as next hop by itself
    return peer


def local_path(prefix: str, withdraw: bool = False):
    """The path `BGPSpeaker.prefix_add` puts in the global table."""
    attributes = OrderedDict()
    attributes[bgp.BGP_ATTR_TYPE_ORIGIN] = bgp.BGPPathAttributeOrigin(bgp.BGP_ATTR_ORIGIN_IGP)
    attributes[bgp.BGP_ATTR_TYPE_AS_PATH] = bgp.BGPPathAttributeAsPath([[]])
    address, length = prefix.split("/")
    if ":" in prefix:
        return Ipv6Path(None, bgp.IP6AddrPrefix(int(length), address), 1, pattrs=attributes,
                        nexthop="::", is_withdraw=withdraw)
    return Ipv4Path(None, bgp.IPAddrPrefix(int(length), address), 1, pattrs=attributes,
                    nexthop="0.0.0.0", is_withdraw=withdraw)


def sent_bytes(peer: Peer, prefix: str, withdraw: bool = False) -> str:
    update = peer._construct_update(OutgoingRoute(local_path(prefix, withdraw)))
    return bytes(update.serialize()).hex()


def unhooked_bytes(peer: Peer, prefix: str, withdraw: bool = False) -> str:
    update = bgp_speaker._ORIGINAL_CONSTRUCT_UPDATE(peer, OutgoingRoute(local_path(prefix, withdraw)))
    return bytes(update.serialize()).hex()


@pytest.fixture
def hooked_table() -> Iterator[RouteTable]:
    table = route_table(TABLE)
    install_update_hook(table)
    yield table
    remove_update_hook()


@pytest.mark.parametrize(("peer", "prefix"), sorted(GOLDEN))
def test_hook_sets_next_hop_and_prepends_per_peer_and_prefix(
        hooked_table: RouteTable, peer: str, prefix: str) -> None:
    assert sent_bytes(stand_in_peer(peer), prefix) == GOLDEN[peer, prefix]


def test_hook_decodes_to_the_table(hooked_table: RouteTable) -> None:
    update = bgp.BGPMessage.parser(bytes.fromhex(GOLDEN[PEER_B, V6]))[0]
    mp_reach = update.get_path_attr(bgp.BGP_ATTR_TYPE_MP_REACH_NLRI)
    assert mp_reach.next_hop == "2001:db8:fb2::2"
    assert update.get_path_attr(bgp.BGP_ATTR_TYPE_AS_PATH).path_seg_list == [[OUR_AS] * 3]


def test_hook_leaves_peers_outside_the_table_alone(hooked_table: RouteTable) -> None:
    other = stand_in_peer(PEER_OTHER)
    for prefix in (V4, V6):
        assert sent_bytes(other, prefix) == unhooked_bytes(other, prefix)
    # Ryu on its own: the session's local address as next hop (IPv4-mapped for IPv6), no prepend.
    assert sent_bytes(other, V4) == update_v4("c612fa01", as_path(OUR_AS))


def test_hook_turns_a_prefix_absent_for_the_peer_into_its_withdrawal(
        hooked_table: RouteTable) -> None:
    del hooked_table[PEER_A][ipaddress.ip_network(V4)]
    del hooked_table[PEER_A][ipaddress.ip_network(V6)]
    peer = stand_in_peer(PEER_A)
    assert sent_bytes(peer, V4) == MARKER + "001b" + "02" + "0004" + "18c63364" + "0000"
    assert sent_bytes(peer, V6) == MARKER + "0024" + "02" + "0000" + "000d" + \
        "800f0a" + "000201" + "3020010db80100"


def test_hook_passes_withdrawals_unchanged(hooked_table: RouteTable) -> None:
    peer = stand_in_peer(PEER_A)
    for prefix in (V4, V6):
        assert sent_bytes(peer, prefix, withdraw=True) == \
            unhooked_bytes(peer, prefix, withdraw=True)


def test_hook_reads_the_table_when_sending(hooked_table: RouteTable) -> None:
    hooked_table[PEER_A][ipaddress.ip_network(V4)] = B4
    assert sent_bytes(stand_in_peer(PEER_A), V4) == GOLDEN[PEER_B, V4]


def test_hook_prepends_as_trans_and_as4_path_on_a_two_octet_session(
        hooked_table: RouteTable) -> None:
    big_as = 4200000001  # not representable in two octets: AS_TRANS (23456) in AS_PATH
    peer = stand_in_peer(PEER_B, local_as=big_as, four_octet=False)
    update = peer._construct_update(OutgoingRoute(local_path(V4)))
    assert update.get_path_attr(bgp.BGP_ATTR_TYPE_AS_PATH).path_seg_list == [[23456] * 3]
    assert update.get_path_attr(bgp.BGP_ATTR_TYPE_AS4_PATH).path_seg_list == [[big_as] * 3]


def test_a_failing_rewrite_withdraws_instead_of_stopping_the_peer(
        hooked_table: RouteTable) -> None:
    hooked_table[PEER_A][ipaddress.ip_network(V6)] = Route("not-an-address")
    assert sent_bytes(stand_in_peer(PEER_A), V6) == MARKER + "0024" + "02" + "0000" + "000d" + \
        "800f0a" + "000201" + "3020010db80100"


def test_remove_update_hook_restores_ryu() -> None:
    install_update_hook(route_table(TABLE))
    remove_update_hook()
    assert Peer._construct_update is bgp_speaker._ORIGINAL_CONSTRUCT_UPDATE
    peer = stand_in_peer(PEER_A)
    assert sent_bytes(peer, V4) == update_v4("c612fa01", as_path(OUR_AS))


def test_rewrite_update_withdraws_an_update_of_several_prefixes() -> None:
    two = [bgp.IPAddrPrefix(24, "198.51.100.0"), bgp.IPAddrPrefix(24, "203.0.113.0")]
    update = bgp.BGPUpdate(nlri=two, path_attributes=[bgp.BGPPathAttributeNextHop("192.0.2.1")])
    rewritten = rewrite_update(update, PEER_A, route_table(TABLE))
    assert rewritten.withdrawn_routes == two
    assert rewritten.nlri == []


def test_rewrite_update_leaves_end_of_rib_alone() -> None:
    end_of_rib = bgp.BGPUpdate()
    assert rewrite_update(end_of_rib, PEER_A, route_table(TABLE)) is end_of_rib


# --- BgpAnnouncer around a stand-in speaker ------------------------------------------------------

class RecordingSpeaker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def prefix_add(self, prefix: str) -> None:
        self.calls.append(("add", prefix))

    def prefix_del(self, prefix: str) -> None:
        self.calls.append(("del", prefix))

    def resend(self, pairs: list[tuple[str, str]]) -> None:
        self.calls.extend(("resend", f"{prefix}@{address}") for address, prefix in pairs)


@pytest.fixture
def announcer(monkeypatch: pytest.MonkeyPatch) -> tuple[BgpAnnouncer, RecordingSpeaker]:
    announcer = BgpAnnouncer(OUR_AS, "198.18.250.1",
                             [Neighbor(PEER_A, 64501), Neighbor(PEER_B, 64502)])
    speaker = RecordingSpeaker()
    monkeypatch.setattr(announcer, "_speaker", speaker)
    monkeypatch.setattr(bgp_speaker, "_resend_to_neighbors", speaker.resend)
    return announcer, speaker


def test_apply_adds_and_deletes_only_prefixes_entering_or_leaving_everywhere(announcer) -> None:
    bgp_announcer, speaker = announcer
    bgp_announcer.apply(TABLE)
    assert speaker.calls == [("add", V4), ("add", V6)]
    speaker.calls.clear()
    bgp_announcer.apply({PEER_B: {V4: B4}})
    assert speaker.calls == [("del", V6), ("resend", f"{V4}@{PEER_A}")]
    assert bgp_announcer.announced() == {PEER_A: {}, PEER_B: {V4: B4}}


def test_apply_resends_only_to_the_neighbor_whose_route_changed(announcer) -> None:
    bgp_announcer, speaker = announcer
    bgp_announcer.apply(TABLE)
    speaker.calls.clear()
    bgp_announcer.apply({PEER_A: {V4: A4, V6: A6}, PEER_B: {V4: Route("198.18.252.2"), V6: B6}})
    assert speaker.calls == [("resend", f"{V4}@{PEER_B}")]


def test_apply_of_the_same_state_sends_nothing(announcer) -> None:
    bgp_announcer, speaker = announcer
    bgp_announcer.apply(TABLE)
    speaker.calls.clear()
    bgp_announcer.apply(TABLE)
    assert speaker.calls == []


def test_apply_updates_the_table_the_hook_reads(announcer) -> None:
    bgp_announcer, _ = announcer
    table = bgp_announcer._table
    bgp_announcer.apply({PEER_A: {V4: A4}})
    assert table == route_table({PEER_A: {V4: A4}, PEER_B: {}})


def test_announcer_before_start() -> None:
    bgp_announcer = BgpAnnouncer(OUR_AS, "198.18.250.1", [Neighbor(PEER_A, 64501)])
    assert bgp_announcer.sessions() == {PEER_A: "down"}
    assert bgp_announcer.announced() == {PEER_A: {}}
    with pytest.raises(RuntimeError):
        bgp_announcer.apply({})
    bgp_announcer.shutdown()  # nothing to stop


def test_announcer_rejects_duplicate_neighbors() -> None:
    with pytest.raises(ValueError):
        BgpAnnouncer(OUR_AS, "198.18.250.1", [Neighbor(PEER_A, 64501), Neighbor(PEER_A, 64502)])


def test_sessions_are_bound_to_the_source_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session leaves from the configured address, so it cannot follow a default route
    once the management link is gone (connect fails instead)."""
    calls = []

    def fake_connect(peer, peer_addr, handler, time_out=None, bind_address=None, password=None):  # type: ignore[no-untyped-def]
        calls.append((peer_addr, bind_address))

    monkeypatch.setattr(bgp_speaker, "_ORIGINAL_CONNECT_TCP", fake_connect)
    try:
        bgp_speaker.bind_sessions_to("198.19.0.1")
        Peer._connect_tcp(object(), ("198.19.0.11", 179), None, time_out=5)
        assert calls == [(("198.19.0.11", 179), ("198.19.0.1", 0))]
    finally:
        bgp_speaker.bind_sessions_to(None)
    assert Peer._connect_tcp is fake_connect  # unbound again: Ryu's own behaviour
