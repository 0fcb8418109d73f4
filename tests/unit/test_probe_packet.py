"""The probe's wire format: built, decoded by Ryu, parsed back; garbage never raises."""
from __future__ import annotations

import random

import pytest
from ryu.lib.packet import ethernet, ipv4, packet, udp

from msp_controller.dataplane.probe_packet import (
    PROBE_MAGIC,
    PROBE_PAYLOAD_LENGTH,
    PROBE_UDP_PORT,
    Probe,
    ProbeTemplate,
    build_probe,
    decode_payload,
    encode_payload,
    parse_probe,
)

EDGE_MAC, MB_MAC = "06:00:00:00:02:01", "06:00:00:00:01:01"
EDGE_IP, MB_IP = "169.254.0.1", "169.254.0.2"


def probe_frame(path_id: int = 3, sequence: int = 12345, sent_at_ns: int = 987_654_321_000) -> bytes:
    return build_probe(path_id, sequence, sent_at_ns, EDGE_MAC, MB_MAC, EDGE_IP, MB_IP)


def test_round_trip():
    assert parse_probe(probe_frame()) == Probe(path_id=3, sequence=12345, sent_at_ns=987_654_321_000)


@pytest.mark.parametrize("fields", [(0, 0, 0), (2**32 - 1, 2**64 - 1, 2**64 - 1)])
def test_round_trip_at_the_field_limits(fields):
    assert parse_probe(probe_frame(*fields)) == Probe(*fields)


def test_the_frame_is_ethernet_ipv4_udp_to_the_probe_port():
    pkt = packet.Packet(probe_frame())
    eth = pkt.get_protocol(ethernet.ethernet)
    ip = pkt.get_protocol(ipv4.ipv4)
    datagram = pkt.get_protocol(udp.udp)
    assert (eth.src, eth.dst, eth.ethertype) == (EDGE_MAC, MB_MAC, 0x0800)
    assert (ip.src, ip.dst, ip.proto, ip.ttl) == (EDGE_IP, MB_IP, 17, 64)
    assert (datagram.src_port, datagram.dst_port) == (PROBE_UDP_PORT, PROBE_UDP_PORT)
    payload = pkt.protocols[-1]
    assert len(payload) == PROBE_PAYLOAD_LENGTH
    assert payload.startswith(PROBE_MAGIC)


def test_checksums_are_filled_in():
    frame = probe_frame()
    ip_header = frame[14:34]
    assert _ones_complement_sum(ip_header) == 0xFFFF
    assert frame[40:42] != b"\0\0"  # UDP checksum present


def test_the_reflected_frame_parses_the_same():
    # The middlebox sends it back unchanged, and switches may pad short frames.
    frame = probe_frame()
    assert parse_probe(frame + b"\0" * 18) == parse_probe(frame)
    assert parse_probe(bytearray(frame)) == parse_probe(frame)


def test_payload_round_trip_and_length():
    payload = encode_payload(1, 2, 3)
    assert len(payload) == PROBE_PAYLOAD_LENGTH
    assert decode_payload(payload) == Probe(1, 2, 3)
    assert decode_payload(payload[:-1]) is None
    assert decode_payload(payload + b"\0") is None


@pytest.mark.parametrize("fields", [(-1, 0, 0), (2**32, 0, 0), (0, 2**64, 0), (0, 0, -1), (0, 0, 2**64)])
def test_out_of_range_fields_are_refused(fields):
    with pytest.raises(ValueError):
        probe_frame(*fields)


@pytest.mark.parametrize("addresses", [
    ("06:00:00:00:02", MB_MAC, EDGE_IP, MB_IP),
    (EDGE_MAC, "zz:00:00:00:01:01", EDGE_IP, MB_IP),
    (EDGE_MAC, MB_MAC, "169.254.0.256", MB_IP),
    (EDGE_MAC, MB_MAC, EDGE_IP, "2001:db8::1"),
])
def test_malformed_addresses_are_refused(addresses):
    with pytest.raises(ValueError):
        build_probe(1, 1, 1, *addresses)


def test_a_udp_frame_to_another_port_is_not_a_probe():
    frame = bytearray(probe_frame())
    frame[36:38] = (PROBE_UDP_PORT + 1).to_bytes(2, "big")
    assert parse_probe(bytes(frame)) is None


def test_a_wrong_magic_or_version_is_not_a_probe():
    frame = bytearray(probe_frame())
    frame[42] ^= 0xFF  # first magic byte
    assert parse_probe(bytes(frame)) is None
    frame = bytearray(probe_frame())
    frame[42 + 8] = 2  # version
    assert parse_probe(bytes(frame)) is None


def test_a_fragment_is_not_a_probe():
    frame = bytearray(probe_frame())
    frame[20] |= 0x20  # more-fragments flag
    assert parse_probe(bytes(frame)) is None
    frame = bytearray(probe_frame())
    frame[21] = 8  # fragment offset 64 bytes
    assert parse_probe(bytes(frame)) is None


def test_other_frames_are_not_probes():
    arp = bytes.fromhex("ffffffffffff" "000000000010" "0806") + bytes(28)
    assert parse_probe(arp) is None
    assert parse_probe(b"") is None


def test_every_truncation_is_rejected_without_raising():
    frame = probe_frame()
    for length in range(len(frame)):
        assert parse_probe(frame[:length]) is None, length


def test_every_single_bit_flip_parses_or_is_rejected_without_raising():
    frame = probe_frame()
    magic_and_version = range(42, 42 + len(PROBE_MAGIC) + 1)
    for bit in range(len(frame) * 8):
        mutated = bytearray(frame)
        mutated[bit // 8] ^= 1 << (bit % 8)
        result = parse_probe(bytes(mutated))
        assert result is None or isinstance(result, Probe)
        if bit // 8 in magic_and_version:
            assert result is None, bit


def test_random_garbage_never_raises():
    rng = random.Random(2024)
    frame = probe_frame()
    for _ in range(20_000):
        kind = rng.randrange(3)
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:  # a real header over random contents: reaches the deeper decoders
            data = frame[:rng.randrange(14, len(frame))] + rng.randbytes(rng.randrange(0, 100))
        else:
            mutated = bytearray(frame)
            for _ in range(rng.randrange(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        result = parse_probe(data)
        assert result is None or isinstance(result, Probe)


def _ones_complement_sum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_a_template_makes_the_same_probe_with_its_fields_patched():
    template = ProbeTemplate(7, "02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.20.2", "198.51.100.1")
    frame = template.frame(2**64 - 1, 123456789)
    built = build_probe(7, 2**64 - 1, 123456789, "02:00:00:00:00:01", "02:00:00:00:00:02",
                        "198.18.20.2", "198.51.100.1")
    assert frame[:40] == built[:40] and frame[42:] == built[42:]  # all but the UDP checksum
    assert frame[40:42] == b"\0\0"  # none: allowed for UDP over IPv4
    assert parse_probe(frame) == Probe(path_id=7, sequence=2**64 - 1, sent_at_ns=123456789)
    with pytest.raises(ValueError):
        template.frame(-1, 0)
