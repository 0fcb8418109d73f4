"""Fuzzing the controller's packet-in path with malformed frames (hypothesis).

A core built from the reference config drives fake switches (every switch connected, hosts
and upstream routers learned, probes sent once). Frames are ARP with odd sizes and opcodes,
IPv6 neighbour discovery (NS, NA, RS, RA, redirects) with odd options and hop limits,
DHCP-like UDP 67/68, probes (genuine, replayed, forged, mangled), VLAN-tagged copies and
plain garbage, each maybe truncated or bit-flipped. They are handed to
`MspCore.packet_in` on every switch (each role), on every port and on unknown ones, from
every table. For every frame:

  * packet_in returns (no exception, no hang);
  * messages go only to the switch the frame came from, and no BGP change follows;
  * no homenet's class choices, path plan (liveness) or announcements change;
  * the learned-neighbour and pending-solicitation tables of every switch stay bounded.

Two plain tests show the bounds hold against a flood a fuzzer would not reach.
"""
from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import pathlib
import signal
import struct
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ryu.ofproto import ofproto_v1_3 as ofp

from msp_controller.core import leases as core_leases
from msp_controller.core import msp as core_msp
from msp_controller.core.msp import MspCore
from msp_controller.dataplane import claims, ofmsg
from msp_controller.dataplane.checksum import internet_checksum
from msp_controller.dataplane.pipeline import MSPMB_DELIVER
from msp_controller.dataplane.probe_packet import PROBE_UDP_PORT, build_probe
from msp_controller.model.config import MspConfig, parse_config
from tests.harness import EDGE, EDGE2, H1_MAC, H2_MAC, HOME, UPSTREAM_MAC, Harness, nd_frame

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=int(os.environ.get("MSP_FUZZ_EXAMPLES", "80")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PACKET_IN_LIMIT_S = 2  # one packet_in taking longer is a hang


@functools.cache
def _config() -> MspConfig:
    with open(ROOT / "etc" / "reference.toml", "rb") as handle:
        return parse_config(tomllib.load(handle))


def build_network() -> tuple[Harness, list[tuple[int, int, bytes]]]:
    """The reference network, learned and probed once; the probes the core sent (edge dpid,
    tunnel port, frame), whose replies the fuzzer may send back."""
    harness = Harness(_config())
    harness.connect_all()
    harness.learn_hosts_and_upstream()
    harness.now = 1.0
    probes = [(dpid, message.actions[-1].port, bytes(message.data))
              for dpid, messages in harness.apply(harness.core.probe_tick(harness.now)).items()
              for message in messages if isinstance(message, ofmsg.parser.OFPPacketOut)]
    return harness, probes


def decisions(core: MspCore) -> dict[str, Any]:
    """What a frame must never change: each homenet's class choices, path plan (which paths
    are live) and where its prefixes are announced."""
    return {name: ({direction: list(choices) for direction, choices in state.choices.items()},
                   state.plan, core.announced_at(name))
            for name, state in core.homenets.items()}


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: Any) -> None:
        raise AssertionError(f"packet_in took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- frames -----------------------------------------------------------------------------------

LAN4 = ipaddress.IPv4Network("198.51.100.0/24")
LAN6 = ipaddress.IPv6Network("2001:db8:100::/64")
GATEWAY_MAC = "0a:00:00:00:01:01"  # any: the gateway's MAC only matters to hosts


def _mac(text: str) -> bytes:
    return bytes(int(octet, 16) for octet in text.split(":"))


MACS = st.one_of(st.sampled_from([_mac(m) for m in (H1_MAC, H2_MAC, UPSTREAM_MAC, GATEWAY_MAC, "ff:ff:ff:ff:ff:ff",
                                                    "00:00:00:00:00:00", "01:00:5e:00:00:01", "33:33:ff:00:00:01")]),
                 st.binary(min_size=6, max_size=6))
IPV4S = st.one_of(
    st.sampled_from([ipaddress.IPv4Address(a).packed for a in (
        "198.51.100.1", "198.51.100.10", "198.51.100.20", "198.51.100.0", "198.51.100.255", "0.0.0.0",
        "255.255.255.255", "198.18.20.1", "198.18.20.2", "198.18.21.1", "198.18.21.2", "127.0.0.1", "224.0.0.1")]),
    st.integers(0, 255).map(lambda host: (LAN4[host]).packed),
    st.binary(min_size=4, max_size=4))
IPV6S = st.one_of(
    st.sampled_from([ipaddress.IPv6Address(a).packed for a in (
        "2001:db8:100::1", "2001:db8:100::10", "2001:db8:100::20", "::", "::1", "fe80::1", "ff02::1",
        "ff02::1:ff00:1", "2001:db8:ff20::1", "2001:db8:ff20::2", "2001:db8:ff21::1", "2001:db8:100:1::1")]),
    st.integers(0, 2**64 - 1).map(lambda host: (LAN6[host]).packed),
    st.binary(min_size=16, max_size=16))
BYTE = st.integers(0, 255)
SHORT = st.integers(0, 0xFFFF)


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


@st.composite
def arp_frames(draw: st.DrawFn) -> bytes:
    hlen = draw(st.sampled_from([6, 6, 6, 0, 5, 8, 255]))
    plen = draw(st.sampled_from([4, 4, 4, 0, 6, 16, 255]))
    sender_mac, target_mac = draw(MACS), draw(MACS)
    body = struct.pack("!HHBBH", draw(st.sampled_from([1, 1, 6, 0, 0xFFFF])),
                       draw(st.sampled_from([0x0800, 0x0800, 0x86DD, 0])), hlen, plen,
                       draw(st.sampled_from([1, 2, 1, 2, 3, 4, 8, 9, 0, 0xFFFF])))
    body += sender_mac + draw(IPV4S) + target_mac + draw(IPV4S)
    return ethernet(draw(MACS), sender_mac, 0x0806, body)


@st.composite
def nd_options(draw: st.DrawFn) -> bytes:
    options = b""
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([1, 2, 1, 2, 3, 4, 5, 14, 25, 31, 0, 255]))
        length = draw(st.sampled_from([1, 1, 0, 2, 3, 4, 255]))  # in units of 8 bytes
        if kind in (1, 2) and length == 1 and draw(st.booleans()):
            data = draw(MACS)
        else:
            data = draw(st.binary(max_size=40))
        if draw(st.booleans()):  # honest about its length, else whatever came out
            data = (data + bytes(8 * length))[:max(8 * length - 2, 0)]
        options += bytes([kind, length]) + data
    return options


@st.composite
def icmpv6_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([135, 136, 135, 136, 133, 134, 137, 128, 129, 1, 0, 255]))
    if kind in (135, 136):
        body = struct.pack("!I", draw(st.integers(0, 2**32 - 1))) + draw(IPV6S)
    elif kind == 133:
        body = bytes(4)
    elif kind == 134:
        body = draw(st.binary(min_size=12, max_size=12))
    elif kind == 137:
        body = bytes(4) + draw(IPV6S) + draw(IPV6S)
    else:
        body = draw(st.binary(max_size=24))
    body += draw(nd_options())
    source, destination = draw(IPV6S), draw(IPV6S)
    message = bytes([kind, draw(st.sampled_from([0, 0, 0, 1, 255]))]) + b"\0\0" + body
    if draw(st.booleans()):
        pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
        message = message[:2] + struct.pack("!H", internet_checksum(pseudo + message)) + message[4:]
    length = draw(st.sampled_from([len(message)] * 3 + [0, len(message) + 8, 0xFFFF]))
    header = struct.pack("!IHBB", draw(st.sampled_from([0x60000000, 0x60000000, 0x40000000, 0xFFFFFFFF])),
                         length, draw(st.sampled_from([58, 58, 58, 0, 43, 44, 60, 59, 17])),
                         draw(st.sampled_from([255, 255, 255, 254, 1, 0])))
    return ethernet(draw(MACS), draw(MACS), 0x86DD, header + source + destination + message)


def ipv4_header(draw: st.DrawFn, payload_length: int, protocol: int) -> bytes:
    options = draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x00", b"\x07\x03\x04", bytes(40)]))
    ihl = draw(st.sampled_from([5 + (len(options) + 3) // 4] * 3 + [0, 4, 15]))
    options = options.ljust(4 * ((len(options) + 3) // 4), b"\0")
    total = draw(st.sampled_from([20 + len(options) + payload_length] * 3 + [0, 20, 0xFFFF]))
    header = struct.pack("!BBHHHBBH", (draw(st.sampled_from([4, 4, 4, 6, 0])) << 4) | ihl, 0, total,
                         draw(SHORT), draw(st.sampled_from([0, 0x4000, 0x2000, 0x0001, 0x3FFF])),
                         draw(BYTE), protocol, 0)
    return header + draw(IPV4S) + draw(IPV4S) + options


@st.composite
def dhcp_frames(draw: st.DrawFn) -> bytes:
    bootp = struct.pack("!BBBBIHH", draw(st.sampled_from([1, 2, 0, 3])), draw(st.sampled_from([1, 6, 0])),
                        draw(st.sampled_from([6, 0, 16, 255])), draw(BYTE), draw(st.integers(0, 2**32 - 1)),
                        draw(SHORT), draw(SHORT))
    bootp += b"".join(draw(IPV4S) for _ in range(4)) + draw(MACS).ljust(16, b"\0") + bytes(192)
    bootp += draw(st.sampled_from([b"\x63\x82\x53\x63"] * 3 + [b"", b"\0\0\0\0"]))
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from([53, 1, 3, 6, 50, 51, 54, 61, 255, 0, 52]))
        bootp += bytes([kind, draw(st.sampled_from([1, 4, 0, 255]))]) + draw(st.binary(max_size=12))
    ports = draw(st.sampled_from([(68, 67), (67, 68), (67, 67), (68, 68)]))
    udp_length = draw(st.sampled_from([8 + len(bootp)] * 3 + [0, 7, 0xFFFF]))
    datagram = struct.pack("!HHHH", *ports, udp_length, 0) + bootp
    return ethernet(draw(MACS), draw(MACS), 0x0800, ipv4_header(draw, len(datagram), 17) + datagram)


@st.composite
def router_solicitations(draw: st.DrawFn) -> bytes:
    """Router solicitations as hosts send them (to ff02::2, hop limit 255, a right checksum
    mostly), with odd sources, options and lengths."""
    source = draw(st.one_of(st.just(bytes(16)), IPV6S))
    message = bytes([133, draw(st.sampled_from([0, 0, 0, 1]))]) + bytes(6) + draw(nd_options())
    destination = ipaddress.IPv6Address("ff02::2").packed
    if draw(st.sampled_from([True, True, True, False])):
        pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
        message = message[:2] + struct.pack("!H", internet_checksum(pseudo + message)) + message[4:]
    header = struct.pack("!IHBB", 0x60000000, draw(st.sampled_from([len(message)] * 3 + [0, 4, 0xFFFF])), 58,
                         draw(st.sampled_from([255, 255, 255, 64])))
    return ethernet(b"\x33\x33\0\0\0\x02", draw(MACS), 0x86DD, header + source + destination + message)


@st.composite
def probe_frames(draw: st.DrawFn, genuine: list[tuple[int, int, bytes]]) -> bytes:
    replay = draw(st.booleans())
    if genuine and replay:
        return draw(st.sampled_from([frame for _, _, frame in genuine]))
    path_id = draw(st.one_of(st.integers(64, 64 + 7), st.integers(0, 2**32 - 1)))
    return build_probe(path_id, draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)),
                       "0a:00:00:00:00:e1", GATEWAY_MAC, "198.18.20.2", "198.51.100.1")


@st.composite
def udp_to_probe_port(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=80))
    datagram = struct.pack("!HHHH", PROBE_UDP_PORT, PROBE_UDP_PORT,
                           draw(st.sampled_from([8 + len(payload), 72, 0, 0xFFFF])), 0) + payload
    return ethernet(draw(MACS), draw(MACS), 0x0800, ipv4_header(draw, len(datagram), 17) + datagram)


@st.composite
def mangled(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> bytes:
    """A frame, often damaged: truncated, extended, bit-flipped or VLAN-tagged."""
    frame = draw(frames)
    how = draw(st.sampled_from(["as is", "as is", "as is", "truncate", "append", "flip", "vlan"]))
    if how == "truncate":
        return frame[:draw(st.integers(0, max(len(frame) - 1, 0)))]
    if how == "append":
        return frame + draw(st.binary(min_size=1, max_size=64))
    if how == "flip" and frame:
        data = bytearray(frame)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "vlan":
        return frame[:12] + struct.pack("!HH", 0x8100, draw(st.integers(0, 0xFFFF))) + frame[12:]
    return frame


def frames(genuine: list[tuple[int, int, bytes]]) -> st.SearchStrategy[bytes]:
    return mangled(st.one_of(arp_frames(), icmpv6_frames(), dhcp_frames(), router_solicitations(),
                             probe_frames(genuine),
                             udp_to_probe_port(), st.binary(max_size=128)))


# --- where a frame arrives ------------------------------------------------------------------------

def arrivals(harness: Harness, genuine: list[tuple[int, int, bytes]]) -> st.SearchStrategy[tuple[int, int, int]]:
    """(dpid, in_port, table_id): every switch and port of the network, ports that do not
    exist, a switch that is not ours; the tables a packet-in can come from."""
    known = [(dpid, number) for dpid, names in harness.ports.items() for number in names.values()]
    known += [(dpid, port) for dpid, port, _ in genuine]  # where probes come back
    odd = st.tuples(st.sampled_from([*harness.ports, 0x999]),
                    st.sampled_from([0, 99, ofp.OFPP_LOCAL, ofp.OFPP_CONTROLLER, 0xFFFFFFFF]))
    tables = st.sampled_from([0, 0, 0, MSPMB_DELIVER, MSPMB_DELIVER, 1, 3, 255])
    return st.tuples(st.one_of(st.sampled_from(known), st.sampled_from(known), odd), tables).map(
        lambda where: (where[0][0], where[0][1], where[1]))


# --- the property ---------------------------------------------------------------------------------

def feed(harness: Harness, dpid: int, in_port: int, table_id: int, frame: bytes,
         tunnel_id: int | None = None) -> None:
    core = harness.core
    before = decisions(core)
    harness.now += 0.013
    ignored = core.ignored_packets
    with time_limit(PACKET_IN_LIMIT_S):
        effects = core.packet_in(dpid, in_port, table_id, frame, harness.now, tunnel_id=tunnel_id)
    kinds = sorted({type(m).__name__ for messages in effects.values() for m in messages})
    event(f"{'ignored' if core.ignored_packets > ignored else 'handled'}: {', '.join(kinds) or 'nothing sent'}")
    assert set(effects) <= {dpid}, f"messages to {set(effects)} for a frame from {dpid:#x}"
    assert not effects.bgp
    harness.apply(effects)
    assert decisions(core) == before, f"{frame.hex()} on {dpid:#x} port {in_port} table {table_id}"
    for switch_dpid, switch in core.switches.items():
        assert len(switch.neighbors) <= core_msp.MAX_NEIGHBORS, switch_dpid
        assert len(switch.solicited) <= core_msp.MAX_SOLICITING, switch_dpid
    for book in core.autoconf.books.values():  # DHCP: offers and leases stay bounded
        assert len(book.offers) <= core_leases.MAX_OFFERS and len(book.by_ip) <= book.size


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Harness, list[tuple[int, int, int, bytes, int | None]]]:
    harness, genuine = build_network()
    arrive, frame = arrivals(harness, genuine), frames(genuine)
    # The VXLAN key a frame came in with: the reference homenet's, another's, none.
    keys = st.sampled_from([1, 1, 2, 0xFFFFFF, None])
    events = draw(st.lists(st.tuples(arrive, frame, keys), min_size=1, max_size=8))
    return harness, [(dpid, port, table, data, key) for (dpid, port, table), data, key in events]


@FUZZ
@given(scenarios())
def test_malformed_frames_change_no_decision_and_raise_nothing(
        scenario: tuple[Harness, list[tuple[int, int, int, bytes, int | None]]]) -> None:
    harness, events = scenario
    for dpid, port, table, frame, key in events:
        feed(harness, dpid, port, table, frame, key)


@FUZZ
@given(st.data())
def test_frames_from_the_lan_and_the_internet_ports(data: st.DataObject) -> None:
    """The ports whose ARP/ND the controller answers, where most parsing happens."""
    harness, genuine = build_network()
    lan, internet = harness.ports[HOME]["mspmb-lan1"], harness.ports[EDGE]["edge1-inet"]
    for _ in range(data.draw(st.integers(1, 6))):
        dpid, port = data.draw(st.sampled_from([(HOME, lan), (EDGE, internet), (EDGE2, 1)]))
        feed(harness, dpid, port, 0, data.draw(mangled(st.one_of(arp_frames(), icmpv6_frames(), dhcp_frames(),
                                                                 router_solicitations()))))


def test_a_flood_of_spoofed_hosts_keeps_the_neighbour_table_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LAN host claiming address after address of the /64 must not grow the controller's
    memory, nor the switch's learned flows, for ever; the newest are learned."""
    monkeypatch.setattr(core_msp, "MAX_NEIGHBORS", 40)  # the same code as 1024, quicker
    harness, _ = build_network()
    lan = harness.ports[HOME]["mspmb-lan1"]
    learned_before = len([f for f in harness.switch(HOME).flows() if f.table_id == MSPMB_DELIVER])
    count = core_msp.MAX_NEIGHBORS + 200
    for index in range(count):
        frame = nd_frame(135, H1_MAC, str(LAN6[0x1000 + index]), "2001:db8:100::1")
        harness.now += 1.0 / claims.NEW_PER_S  # as fast as new addresses are learned at all
        harness.apply(harness.core.packet_in(HOME, lan, 0, frame, harness.now))
    switch = harness.core.switches[HOME]
    assert len(switch.neighbors) == core_msp.MAX_NEIGHBORS
    assert str(LAN6[0x1000 + count - 1]) in switch.neighbors  # the newest are learned
    learned = [f for f in harness.switch(HOME).flows() if f.table_id == MSPMB_DELIVER]
    assert len(learned) <= learned_before + core_msp.MAX_NEIGHBORS


def test_a_flood_of_unknown_destinations_keeps_the_solicitations_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Table misses for ever new addresses of the PI prefixes (from the Internet): the
    controller asks for each at most once a second and remembers a bounded number."""
    monkeypatch.setattr(core_msp, "MAX_SOLICITING", 40)
    harness, _ = build_network()
    switch = harness.core.switches[HOME]
    tunnel = harness.ports[HOME]["edge1-ispA"]
    asked = 0
    for index in range(core_msp.MAX_SOLICITING * 2):
        harness.now += 0.0001  # all within one second: none may be forgotten yet
        effects = harness.core.packet_in(HOME, tunnel, MSPMB_DELIVER, _udp6_to(LAN6[0x2000 + index]), harness.now)
        asked += bool(effects.get(HOME))
        assert len(switch.solicited) <= core_msp.MAX_SOLICITING
    assert asked == core_msp.MAX_SOLICITING
    harness.now += 2 * core_msp.SOLICIT_INTERVAL_S  # later, the old ones are let go
    effects = harness.core.packet_in(HOME, tunnel, MSPMB_DELIVER, _udp6_to(LAN6[0x99]), harness.now)
    assert effects.get(HOME) and len(switch.solicited) <= core_msp.MAX_SOLICITING


def _udp6_to(destination: ipaddress.IPv6Address) -> bytes:
    """A UDP packet from the Internet to `destination`, as the MSPMB's deliver table misses it."""
    datagram = struct.pack("!HHHH", 4000, 5001, 8, 0)
    header = struct.pack("!IHBB", 0x60000000, len(datagram), 17, 63)
    header += ipaddress.IPv6Address("2001:db8:200::10").packed + destination.packed
    return ethernet(_mac(GATEWAY_MAC), _mac(UPSTREAM_MAC), 0x86DD, header + datagram)
